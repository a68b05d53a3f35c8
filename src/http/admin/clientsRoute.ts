// TPP clients on the admin listener, for a bank's onboarding pipeline (no shell needed); signed
// like the publishing API (x-ob-events-signature over the method, path and raw body; a GET or
// DELETE signs the empty body). The same operations as `ob-events clients …`, the same JSON.
//
// GET    /admin/v1/clients               → {"clients": [<client>, ...]} (all but deleted ones)
// POST   /admin/v1/clients               <registration> → 201 <client>; 409 if active already
//                                          (a revoked or deleted id is registered again)
// GET    /admin/v1/clients/{id}          → <client> (deleted ones too)
// PATCH  /admin/v1/clients/{id}          <changes> → <client>; members absent stay
// POST   /admin/v1/clients/{id}/revoke   → <client>
// DELETE /admin/v1/clients/{id}          → <client> + "discarded_sets"
//
// <registration>: {"client_id", "jwks" | "jwks_uri", "token_endpoint_auth_method"?,
//   "tls_client_auth_subject_dn"?, "scopes"?: [..], "name"?, "signing_iss"?}
// <changes>: the same members but client_id; "tls_client_auth_subject_dn": null removes the DN.
import { Router, type Request } from 'express';
import type { Clock } from '../../clock.js';
import type { ClientChanges, Clients } from '../../domain/clients.js';
import { clientView } from '../../domain/clientView.js';
import { AppError, invalid } from '../../errors.js';
import { adminSignatureSteps, type AdminReplayCache } from './hmacAuth.js';

export interface AdminClientsDeps {
  clients: Clients;
  adminApiSecret: string | undefined;
  clock: Clock;
  /** Admin MACs already accepted (admin_request_macs): a captured request cannot be replayed. */
  replays: AdminReplayCache;
}

const MEMBERS = [
  'jwks',
  'jwks_uri',
  'token_endpoint_auth_method',
  'tls_client_auth_subject_dn',
  'tls_cert_thumbprints',
  'scopes',
  'name',
  'signing_iss',
] as const;

export function adminClientsRouter(deps: AdminClientsDeps): Router {
  const router = Router();
  const signed = adminSignatureSteps(
    { secret: deps.adminApiSecret, clock: deps.clock, replays: deps.replays },
    256 * 1024,
  );
  const { clients } = deps;

  router.get('/admin/v1/clients', ...signed, async (_req, res) => {
    res.json({ clients: (await clients.list()).map(clientView) });
  });
  router.post('/admin/v1/clients', ...signed, async (req, res) => {
    const body = jsonObject(req, ['client_id', ...MEMBERS]);
    if (typeof body.client_id !== 'string') {
      throw invalid('UK.OBIE.Field.Missing', 'client_id (a string) is required', 'client_id');
    }
    const changes = toChanges(body);
    const client = await clients.register({
      ...changes,
      clientId: body.client_id,
      tlsSubjectDn: changes.tlsSubjectDn ?? undefined,
    });
    res.status(201).json(clientView(client));
  });
  router.get('/admin/v1/clients/:id', ...signed, async (req, res) => {
    res.json(clientView(await clients.show(idOf(req))));
  });
  router.patch('/admin/v1/clients/:id', ...signed, async (req, res) => {
    const client = await clients.update(idOf(req), toChanges(jsonObject(req, [...MEMBERS])));
    res.json(clientView(client));
  });
  router.post('/admin/v1/clients/:id/revoke', ...signed, async (req, res) => {
    res.json(clientView(await clients.revoke(idOf(req))));
  });
  router.delete('/admin/v1/clients/:id', ...signed, async (req, res) => {
    const { client, discardedSets } = await clients.delete(idOf(req));
    res.json({ ...clientView(client), discarded_sets: discardedSets });
  });
  return router;
}

function idOf(req: Request): string {
  return String(req.params.id);
}

function jsonObject(req: Request, allowed: readonly string[]): Record<string, unknown> {
  if (!req.is('application/json')) {
    throw new AppError('unsupported_media_type', 'send application/json');
  }
  let body: unknown;
  try {
    body = JSON.parse((req as { rawBody?: Buffer }).rawBody!.toString('utf8'));
  } catch {
    throw invalid('UK.OBIE.Resource.InvalidFormat', 'request body is not valid JSON', 'body');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid('UK.OBIE.Resource.InvalidFormat', 'request body must be a JSON object', 'body');
  }
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw invalid('UK.OBIE.Field.Unexpected', `unknown member ${unknown[0]}`, unknown[0]);
  }
  return body as Record<string, unknown>;
}

function toChanges(body: Record<string, unknown>): ClientChanges {
  const text = (key: string): string | undefined => {
    const v = body[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string')
      throw invalid('UK.OBIE.Field.Invalid', `${key} must be a string`, key);
    return v;
  };
  const scopes = body.scopes;
  if (
    scopes !== undefined &&
    (!Array.isArray(scopes) || !scopes.every((s): s is string => typeof s === 'string'))
  ) {
    throw invalid('UK.OBIE.Field.Invalid', 'scopes must be an array of strings', 'scopes');
  }
  const dn = body.tls_client_auth_subject_dn;
  if (dn !== undefined && dn !== null && typeof dn !== 'string') {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      'tls_client_auth_subject_dn must be a string or null',
      'tls_client_auth_subject_dn',
    );
  }
  const thumbprints = body.tls_cert_thumbprints;
  if (
    thumbprints !== undefined &&
    (!Array.isArray(thumbprints) || !thumbprints.every((t): t is string => typeof t === 'string'))
  ) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      'tls_cert_thumbprints must be an array of strings',
      'tls_cert_thumbprints',
    );
  }
  return {
    jwks: body.jwks,
    jwksUri: text('jwks_uri'),
    tlsCertThumbprints: thumbprints,
    authMethod: text('token_endpoint_auth_method'),
    tlsSubjectDn: dn as string | null | undefined,
    scopes,
    name: text('name'),
    signingIss: text('signing_iss'),
  };
}
