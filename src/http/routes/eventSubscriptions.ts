// {basePath}/event-subscriptions — the OBIE Event Subscription API (3.1.11 and 4.0: the same
// bodies). Thin: mounted by src/http/routes/obieApi.ts once per API version, after the access
// token was verified; each route checks its scope, reads and validates the body (`body`: the
// body policy and the version's OpenAPI validator), checks the request signature where OBIE
// requires one (POST, PUT), hands the body to src/domain/subscriptions.ts with the API version,
// and sends the answer:
//   POST   201 OBEventSubscriptionResponse1   signed
//   GET    200 OBEventSubscriptionsResponse1  signed (an empty list when there is none)
//   PUT    200 OBEventSubscriptionResponse1   signed
//   DELETE 204                                not signed (no body)
// A signed response is serialised once; the signature covers exactly the bytes sent. A GET's
// answer is built once per stored subscription: the read cache (src/domain/subscriptions.ts)
// hands back the same object for up to a second, and its answer is kept beside it (WeakMap).
import type { Request, RequestHandler, Response } from 'express';
import type { Config } from '../../config.js';
import type { StoredSubscription, Subscriptions } from '../../domain/subscriptions.js';
import type { RequestSignatures } from '../../domain/requestSignatures.js';
import type { ResponseSigner } from '../../domain/responseSigner.js';
import type { ApiProfile } from '../apiProfiles.js';
import {
  requireAccessToken,
  SUBSCRIPTION_SCOPES,
  type AccessTokenVerifier,
} from '../auth/accessToken.js';
import { rawBody } from '../bodyPolicy.js';
import { requestContext } from '../context.js';
import { sendPreparedJson } from '../jsonBytes.js';
import { memoised } from '../../memo.js';
import type { components, operations } from '../openapi-types.js';
import type { VersionRoutes } from './obieApi.js';

/** Relative to the API version's base path. */
export const EVENT_SUBSCRIPTIONS = '/event-subscriptions';
/** The v3.1 path (kept for callers that name it). */
export const EVENT_SUBSCRIPTIONS_PATH = '/open-banking/v3.1/event-subscriptions';
const ITEM = `${EVENT_SUBSCRIPTIONS}/:EventSubscriptionId`;

type Schemas = components['schemas'];
type CreateRequest = Schemas['OBEventSubscription1'];
type ChangeRequest = Schemas['OBEventSubscriptionResponse1'];
type SubscriptionResponse = Schemas['OBEventSubscriptionResponse1'];
type SubscriptionsResponse = Schemas['OBEventSubscriptionsResponse1'];
type SubscriptionData = SubscriptionResponse['Data'];
/** A GET answer and its bytes (neither is changed once made). */
interface Listing {
  payload: SubscriptionsResponse;
  text: string;
}
type ItemPath = operations['ChangeEventSubscriptionsEventSubscriptionId']['parameters']['path'];

export interface EventSubscriptionsDeps {
  config: Config;
  services: {
    accessTokens: AccessTokenVerifier;
    subscriptions: Subscriptions;
    requestSignatures: RequestSignatures;
    responseSigner: ResponseSigner;
  };
}

/** Adds the subscription routes of `profile` to `routes` (the profile's base path). */
export function eventSubscriptionRoutes(
  routes: VersionRoutes,
  deps: EventSubscriptionsDeps,
  profile: ApiProfile,
  body: RequestHandler[],
): void {
  const { subscriptions, requestSignatures, responseSigner } = deps.services;
  const api = profile.version;
  const authorised = requireAccessToken(deps, { scopes: SUBSCRIPTION_SCOPES });
  const base = `${deps.config.http.publicUrl}${profile.basePath}${EVENT_SUBSCRIPTIONS}`;

  const checkSignature = async (req: Request, res: Response) =>
    requestSignatures.check(
      clientIdOf(res),
      req.get('x-jws-signature'),
      rawBody(req) ?? Buffer.alloc(0),
    );

  const sendSigned = async (res: Response, status: number, payload: object, text?: string) => {
    text ??= JSON.stringify(payload);
    res.setHeader('x-jws-signature', await responseSigner.sign(text));
    sendPreparedJson(res, status, payload, text);
  };

  const listing = (found: StoredSubscription | undefined): Listing => {
    const payload: SubscriptionsResponse = {
      Data: { EventSubscription: found ? [toData(found)] : [] },
      Links: { Self: base },
      Meta: {},
    };
    return { payload, text: JSON.stringify(payload) };
  };
  const noListing = listing(undefined);
  const listings = new WeakMap<StoredSubscription, Listing>();

  const one = (s: StoredSubscription): SubscriptionResponse => ({
    Data: toData(s),
    Links: { Self: `${base}/${encodeURIComponent(s.subscriptionId)}` },
    Meta: {},
  });

  const create: RequestHandler = async (req, res) => {
    await checkSignature(req, res);
    const { Data } = req.body as CreateRequest;
    const created = await subscriptions.create(clientIdOf(res), api, {
      callbackUrl: Data.CallbackUrl,
      version: Data.Version,
      eventTypes: Data.EventTypes,
    });
    await sendSigned(res, 201, one(created));
  };

  const read: RequestHandler = async (_req, res) => {
    const found = await subscriptions.getThrough(clientIdOf(res), api);
    const answer = found ? memoised(listings, found, () => listing(found)) : noListing;
    await sendSigned(res, 200, answer.payload, answer.text);
  };

  const change: RequestHandler = async (req, res) => {
    await checkSignature(req, res);
    const { EventSubscriptionId } = req.params as ItemPath;
    const { Data } = req.body as ChangeRequest;
    const replaced = await subscriptions.replace(clientIdOf(res), api, EventSubscriptionId, {
      subscriptionId: Data.EventSubscriptionId,
      callbackUrl: Data.CallbackUrl,
      version: Data.Version,
      eventTypes: Data.EventTypes,
    });
    await sendSigned(res, 200, one(replaced));
  };

  const remove: RequestHandler = async (req, res) => {
    const { EventSubscriptionId } = req.params as ItemPath;
    await subscriptions.delete(clientIdOf(res), api, EventSubscriptionId);
    res.status(204).end();
  };

  routes.path(EVENT_SUBSCRIPTIONS, {
    post: [authorised, ...body, create],
    get: [authorised, ...body, read],
  });
  routes.path(ITEM, {
    put: [authorised, ...body, change],
    delete: [authorised, ...body, remove],
  });
}

/** OBIE field order; optional members left out when they have no value. */
function toData(s: StoredSubscription): SubscriptionData {
  return {
    EventSubscriptionId: s.subscriptionId,
    ...(s.callbackUrl !== null ? { CallbackUrl: s.callbackUrl } : {}),
    Version: s.version,
    ...(s.eventTypes !== null ? { EventTypes: [...s.eventTypes] } : {}),
  };
}

function clientIdOf(res: Response): string {
  const clientId = requestContext(res).clientId;
  if (clientId === undefined) throw new Error('access token step did not run');
  return clientId;
}
