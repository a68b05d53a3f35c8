// Files named on the command line: read them or stop with one line saying which and why.
import fs from 'node:fs';
import type { JWK } from 'jose';
import { CliError } from './index.js';

export function readTextFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

export function readJsonFile(file: string): unknown {
  const text = readTextFile(file);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CliError(`${file} is not valid JSON`);
  }
}

/** One private JWK (like certs/dev/tpp.private.jwk.json), not a JWK Set. */
export function readPrivateJwkFile(file: string): JWK {
  const jwk = readJsonFile(file);
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk) || 'keys' in jwk) {
    throw new CliError(`${file} must hold one private JWK (not a JWK Set)`);
  }
  return jwk as JWK;
}
