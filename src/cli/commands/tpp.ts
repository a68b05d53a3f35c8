// `ob-events tpp assertion`: the TPP side of the token request, for trying the server with curl.
// (`tpp sign` lives in its own file.)
import { signClientAssertion } from '../../crypto/clientAssertion.js';
import { cliConfig } from '../context.js';
import { CliError } from '../index.js';
import { readPrivateJwkFile } from '../files.js';

const ASSERTION_LIFETIME_SECONDS = 300;

export interface TppAssertionOptions {
  clientId: string;
  /** A private JWK file, e.g. certs/dev/tpp.private.jwk.json. */
  key: string;
  kid?: string;
  /** Default: `${PUBLIC_URL}/token`. */
  aud?: string;
}

/** Prints a fresh client assertion (private_key_jwt) to stdout. */
export async function tppAssertion(o: TppAssertionOptions): Promise<void> {
  const privateJwk = readPrivateJwkFile(o.key);
  const kid = o.kid ?? privateJwk.kid;
  if (!kid) throw new CliError(`${o.key} has no "kid": pass --kid`);
  const audience = o.aud ?? `${cliConfig().config.http.publicUrl}/token`;
  let assertion: string;
  try {
    assertion = await signClientAssertion({
      clientId: o.clientId,
      audience,
      privateJwk,
      kid,
      lifetimeSeconds: ASSERTION_LIFETIME_SECONDS,
      nowMs: Date.now(),
    });
  } catch (err) {
    throw new CliError(`${o.key}: ${(err as Error).message}`);
  }
  process.stdout.write(`${assertion}\n`);
}
