// /open-banking/v3.1/event-subscriptions — the OBIE Event Subscription API (3.1.11). Thin: the
// request has already matched openapi/openapi.yaml (src/http/openapi.ts); each route
// authenticates the client (access token), checks the request signature where OBIE requires one
// (POST, PUT), hands the body to src/domain/subscriptions.ts, and sends the answer:
//   POST   201 OBEventSubscriptionResponse1   signed
//   GET    200 OBEventSubscriptionsResponse1  signed (an empty list when there is none)
//   PUT    200 OBEventSubscriptionResponse1   signed
//   DELETE 204                                not signed (no body)
// A signed response is serialised once; the signature covers exactly the bytes sent.
import { Router, type Request, type Response } from 'express';
import type { Config } from '../../config.js';
import type { StoredSubscription, Subscriptions } from '../../domain/subscriptions.js';
import type { RequestSignatures } from '../../domain/requestSignatures.js';
import type { ResponseSigner } from '../../domain/responseSigner.js';
import {
  requireAccessToken,
  SUBSCRIPTION_SCOPES,
  type AccessTokenVerifier,
} from '../auth/accessToken.js';
import { requestContext } from '../context.js';
import { sendPreparedJson } from '../jsonBytes.js';
import { rawBody } from '../openapi.js';
import type { components, operations } from '../openapi-types.js';

export const EVENT_SUBSCRIPTIONS_PATH = '/open-banking/v3.1/event-subscriptions';
const ITEM_PATH = `${EVENT_SUBSCRIPTIONS_PATH}/:EventSubscriptionId`;

type Schemas = components['schemas'];
type CreateRequest = Schemas['OBEventSubscription1'];
type ChangeRequest = Schemas['OBEventSubscriptionResponse1'];
type SubscriptionResponse = Schemas['OBEventSubscriptionResponse1'];
type SubscriptionsResponse = Schemas['OBEventSubscriptionsResponse1'];
type SubscriptionData = SubscriptionResponse['Data'];
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

export function eventSubscriptionsRouter(deps: EventSubscriptionsDeps): Router {
  const { subscriptions, requestSignatures, responseSigner } = deps.services;
  const authenticated = requireAccessToken(deps, { scopes: SUBSCRIPTION_SCOPES });
  const base = `${deps.config.http.publicUrl}${EVENT_SUBSCRIPTIONS_PATH}`;
  const router = Router();

  const checkSignature = async (req: Request, res: Response) =>
    requestSignatures.check(
      clientIdOf(res),
      req.get('x-jws-signature'),
      rawBody(req) ?? Buffer.alloc(0),
    );

  const sendSigned = async (res: Response, status: number, body: object) => {
    const text = JSON.stringify(body);
    res.setHeader('x-jws-signature', await responseSigner.sign(text));
    sendPreparedJson(res, status, body, text);
  };

  const one = (s: StoredSubscription): SubscriptionResponse => ({
    Data: toData(s),
    Links: { Self: `${base}/${encodeURIComponent(s.subscriptionId)}` },
    Meta: {},
  });

  router.post(EVENT_SUBSCRIPTIONS_PATH, authenticated, async (req, res) => {
    await checkSignature(req, res);
    const { Data } = req.body as CreateRequest;
    const created = await subscriptions.create(clientIdOf(res), {
      callbackUrl: Data.CallbackUrl,
      version: Data.Version,
      eventTypes: Data.EventTypes,
    });
    await sendSigned(res, 201, one(created));
  });

  router.get(EVENT_SUBSCRIPTIONS_PATH, authenticated, async (_req, res) => {
    const found = await subscriptions.get(clientIdOf(res));
    const body: SubscriptionsResponse = {
      Data: { EventSubscription: found ? [toData(found)] : [] },
      Links: { Self: base },
      Meta: {},
    };
    await sendSigned(res, 200, body);
  });

  router.put(ITEM_PATH, authenticated, async (req, res) => {
    await checkSignature(req, res);
    const { EventSubscriptionId } = req.params as ItemPath;
    const { Data } = req.body as ChangeRequest;
    const replaced = await subscriptions.replace(clientIdOf(res), EventSubscriptionId, {
      subscriptionId: Data.EventSubscriptionId,
      callbackUrl: Data.CallbackUrl,
      version: Data.Version,
      eventTypes: Data.EventTypes,
    });
    await sendSigned(res, 200, one(replaced));
  });

  router.delete(ITEM_PATH, authenticated, async (req, res) => {
    const { EventSubscriptionId } = req.params as ItemPath;
    await subscriptions.delete(clientIdOf(res), EventSubscriptionId);
    res.status(204).end();
  });

  return router;
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
