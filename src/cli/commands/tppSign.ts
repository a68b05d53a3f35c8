// `ob-events tpp sign`: the TPP side of request signing, for trying the server with curl. Reads a
// request body on stdin and prints its x-jws-signature: a detached PS256 JWS over exactly those
// bytes with the OBIE 3.1.4+ header (kid, typ JOSE, and the critical
// http://openbanking.org.uk/iat|iss|tan). Send the same bytes: `curl --data-binary @body.json`
// (plain -d strips newlines, and the signature no longer matches).
import { createPrivateKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { signDetached } from '../../crypto/detachedJws.js';
import { cliConfig } from '../context.js';
import { CliError } from '../index.js';
import { readPrivateJwkFile } from '../files.js';

export interface TppSignOptions {
  /** A private JWK file, e.g. certs/dev/tpp.private.jwk.json. */
  key: string;
  /** Default: the kid in the key file. */
  kid?: string;
  /** http://openbanking.org.uk/iss: the client's registered signing identity (its client id by default). */
  iss: string;
  /** http://openbanking.org.uk/tan; default OB_TRUST_ANCHOR. */
  tan?: string;
}

export async function tppSign(o: TppSignOptions, stdin: NodeJS.ReadableStream = process.stdin) {
  const jwk = readPrivateJwkFile(o.key);
  const kid = o.kid ?? jwk.kid;
  if (!kid) throw new CliError(`${o.key} has no "kid": pass --kid`);
  const privateKey = rsaPrivateKey(jwk, o.key);
  if ((stdin as { isTTY?: boolean }).isTTY) {
    throw new CliError('pipe the request body on stdin: ob-events tpp sign ... < body.json');
  }
  const body = await readAll(stdin);
  const tan = o.tan ?? cliConfig().config.subscriptions.trustAnchor;
  const signature = await signDetached(
    body,
    { kid, privateKey },
    {
      iss: o.iss,
      tan,
      iat: Math.floor(Date.now() / 1000),
    },
  );
  process.stdout.write(`${signature}\n`);
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  }
  return Buffer.concat(chunks);
}

function rsaPrivateKey(jwk: JWK, file: string): KeyObject {
  if (jwk.kty !== 'RSA' || jwk.d === undefined) {
    throw new CliError(`${file} must hold a private RSA JWK (PS256)`);
  }
  try {
    return createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch (err) {
    throw new CliError(`${file}: not a usable private key (${(err as Error).message})`);
  }
}
