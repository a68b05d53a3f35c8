// ob-events/tpp: the TPP side of ob-events (UK Open Banking event notifications).
//
//   import { createTppClient } from 'ob-events/tpp';
//
// See the README's "TPP SDK" section.
export {
  createTppClient,
  TPP_API_VERSIONS,
  type Subscription,
  type SubscribeInput,
  type SubscriptionChanges,
  type TppClient,
  type TppApiVersion,
  type TppClientOptions,
} from './client.js';
export type { TokenAuthMethod } from './accessTokens.js';
export type { ServerMetadata } from './discovery.js';
export type { EventsOptions, InvalidSet, PollRequest, PollResponse } from './eventStream.js';
export {
  createPushHandler,
  type PushEventHandler,
  type PushHandlerOptions,
} from './pushHandler.js';
export {
  createSetVerifier,
  SetVerificationError,
  verifySet,
  type SetClaims,
  type SetErrorCode,
  type SetEvent,
  type SetSubject,
  type SetVerifier,
  type SetVerifierOptions,
  type VerifiedSet,
} from './setVerifier.js';
export { TppError, type PemInput, type TlsIdentity, type TppErrorCode } from './transport.js';
