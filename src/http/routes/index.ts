// Which routers each listener mounts, in order. Each route file builds one express Router from
// the services it needs; this list is the table of contents of the HTTP surface.
import type { Router } from 'express';
import type { Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { Services } from '../../main.js';

export interface RouteDeps {
  config: Config;
  services: Services;
  logger: Logger;
  clock: Clock;
}

/** The API listener (mTLS): discovery, JWKS, token, and the OBIE event APIs. */
export function apiRouters(_deps: RouteDeps): Router[] {
  return [];
}

/** The admin listener (bank side): metrics, publishing, deliveries. Health is built in. */
export function adminRouters(_deps: RouteDeps): Router[] {
  return [];
}
