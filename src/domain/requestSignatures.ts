// x-jws-signature on the requests that change a subscription (POST and PUT
// /event-subscriptions): a detached JWS over the exact body by one of the client's registered
// keys, with `iss` its registered signing identity (DECISIONS.md "x-jws-signature").
// REQUIRE_REQUEST_SIGNATURE=false accepts a request without one (test benches); a signature
// that is sent is verified all the same.
import { decodeProtectedHeader } from 'jose';
import { epochSeconds, type Clock } from '../clock.js';
import {
  DEFAULT_SIGNATURE_MAX_AGE_SECONDS,
  DetachedJwsVerifier,
  JWS_SIGNATURE_HEADER,
} from '../crypto/detachedJws.js';
import { invalid, UnauthenticatedError } from '../errors.js';
import type { Clients } from './clients.js';

export interface RequestSignaturesDeps {
  clients: Pick<Clients, 'findActive'>;
  clock: Clock;
  required: boolean;
  trustAnchor: string;
  clockToleranceSeconds: number;
  maxAgeSeconds?: number;
}

export class RequestSignatures {
  private readonly verifier: DetachedJwsVerifier;

  constructor(private readonly deps: RequestSignaturesDeps) {
    this.verifier = new DetachedJwsVerifier({
      trustAnchor: deps.trustAnchor,
      clockToleranceSeconds: deps.clockToleranceSeconds,
      maxAgeSeconds: deps.maxAgeSeconds ?? DEFAULT_SIGNATURE_MAX_AGE_SECONDS,
    });
  }

  /** Throws a 400 UK.OBIE.Signature.* error unless `signature` is acceptable for `body`. */
  async check(clientId: string, signature: string | undefined, body: Uint8Array): Promise<void> {
    if (signature === undefined || signature === '') {
      if (!this.deps.required) return;
      throw invalid(
        'UK.OBIE.Signature.Missing',
        'x-jws-signature is required: a detached JWS over the request body',
        JWS_SIGNATURE_HEADER,
      );
    }
    const client = await this.deps.clients.findActive(clientId, signatureKid(signature));
    if (!client) throw new UnauthenticatedError(`client ${clientId} is not active`);
    await this.verifier.verify(signature, body, client, epochSeconds(this.deps.clock));
  }
}

/** The kid the signature names (a client with a jwks_uri refetches its set for a new one). */
function signatureKid(signature: string): string | undefined {
  try {
    const kid = decodeProtectedHeader(signature).kid;
    return typeof kid === 'string' ? kid : undefined;
  } catch {
    return undefined; // the verifier reports the malformed signature
  }
}
