// `ob-events push endpoints|enable`: the push health of TPP endpoints, and enabling push again
// after it was disabled for failing too long (src/domain/pushEndpoints.ts).
//   endpoints [--client-id ID] → a JSON array: endpoints that failed lately, with breaker state
//        (closed, open, half-open, disabled), failing since, last success and last error.
//   enable CLIENT_ID → {"clientId": ..., "enabled": true, "wasDisabled": bool}: breaker reset,
//        waiting SETs due now; exits non-zero for an unknown client.
import { enablePush, listPushEndpoints } from '../../domain/pushEndpoints.js';
import { printJson, withServices } from '../context.js';
import { CliError } from '../index.js';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function pushEndpoints(o: { clientId?: string }): Promise<void> {
  if (o.clientId !== undefined && !CLIENT_ID.test(o.clientId))
    throw new CliError(`${o.clientId} is not a client id`);
  await withServices(async ({ db }) => {
    printJson(await listPushEndpoints(db.knex, o.clientId));
  });
}

export async function pushEnable(clientId: string): Promise<void> {
  if (!CLIENT_ID.test(clientId)) throw new CliError(`${clientId} is not a client id`);
  await withServices(async ({ db }) => {
    const result = await enablePush(db.knex, clientId);
    if (!result.ok) throw new CliError(result.message);
    printJson({ clientId, enabled: true, wasDisabled: result.wasDisabled });
  });
}
