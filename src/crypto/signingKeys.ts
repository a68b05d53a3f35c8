// The server's own PS256 keys: generation, loading from a PEM file, and sealing private keys at
// rest (AES-256-GCM under KEY_ENCRYPTION_KEY, with the kid as associated data so a sealed key
// cannot be moved to another row).
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

export const SIGNING_ALG = 'PS256';
const SEALED_PREFIX = 'sealed.v1.';

export interface GeneratedKey {
  kid: string;
  publicJwk: JWK;
  privateJwk: JWK;
}

export async function generateSigningKey(): Promise<GeneratedKey> {
  const { privateKey, publicKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: 2048,
  });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
  return {
    kid,
    publicJwk: { ...publicJwk, kid, alg: SIGNING_ALG, use: 'sig' },
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALG },
  };
}

/** A bank's own key (HSM export, keystore): a PEM RSA private key and the kid it is published under. */
export async function loadSigningKeyFile(
  file: string,
  kid: string,
): Promise<{ publicJwk: JWK; privateKey: KeyObject }> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(fs.readFileSync(file));
  } catch (err) {
    throw new Error(
      `SIGNING_KEY_FILE ${file}: not a readable PEM private key (${(err as Error).message})`,
    );
  }
  if (
    privateKey.asymmetricKeyType !== 'rsa' ||
    (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048
  ) {
    throw new Error(`SIGNING_KEY_FILE ${file}: PS256 needs an RSA key of at least 2048 bits`);
  }
  const publicJwk = await exportJWK(createPublicKey(privateKey));
  return { publicJwk: { ...publicJwk, kid, alg: SIGNING_ALG, use: 'sig' }, privateKey };
}

export function sealPrivateKey(jwk: JWK, kid: string, encryptionKey: Buffer | undefined): string {
  const plain = JSON.stringify(jwk);
  if (!encryptionKey) return plain;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', encryptionKey, iv);
  cipher.setAAD(Buffer.from(kid));
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return (
    SEALED_PREFIX + [iv, ct, cipher.getAuthTag()].map((b) => b.toString('base64url')).join('.')
  );
}

export function isSealed(stored: string): boolean {
  return stored.startsWith(SEALED_PREFIX);
}

export function openPrivateKey(
  stored: string,
  kid: string,
  encryptionKey: Buffer | undefined,
): JWK {
  if (!isSealed(stored)) return JSON.parse(stored) as JWK;
  if (!encryptionKey) {
    throw new Error(`signing key ${kid} is encrypted at rest; set KEY_ENCRYPTION_KEY to use it`);
  }
  const [iv, ct, tag] = stored
    .slice(SEALED_PREFIX.length)
    .split('.')
    .map((p) => Buffer.from(p, 'base64url'));
  if (!iv || !ct || !tag) throw new Error(`signing key ${kid}: malformed sealed key`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', encryptionKey, iv);
    decipher.setAAD(Buffer.from(kid));
    decipher.setAuthTag(tag);
    return JSON.parse(
      Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8'),
    ) as JWK;
  } catch {
    throw new Error(`signing key ${kid}: KEY_ENCRYPTION_KEY does not open it (wrong key?)`);
  }
}

export function privateKeyFromJwk(jwk: JWK): KeyObject {
  return createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
}

export function publicKeyFromJwk(jwk: JWK): KeyObject {
  return createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
}
