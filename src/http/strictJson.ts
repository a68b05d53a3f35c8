// Request bodies are read exactly as sent, or refused (400): never altered. body-parser would
// decode invalid UTF-8 into U+FFFD and carry on, so a bank system's event would be signed into a
// SET with text it never sent; and JSON may carry "\u0000" or a lone surrogate that Postgres
// cannot store. Small functions, so that every body parser (express.json's `verify`, the admin
// routes' raw bodies) applies the same two rules.
import type { IncomingMessage } from 'node:http';
import { AppError, detail } from '../errors.js';
import { firstUnstorableText } from '../storableText.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The body as text; a 400 when it is not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    const message = 'request body is not valid UTF-8';
    throw new AppError('invalid_request', message, [
      detail('UK.OBIE.Resource.InvalidFormat', message),
    ]);
  }
}

/** For express.json({ verify }): refuses a body that is not valid UTF-8 before it is parsed. */
export function verifyUtf8(_req: IncomingMessage, _res: unknown, bytes: Buffer): void {
  try {
    decodeUtf8(bytes);
  } catch (err) {
    // body-parser reports what verify throws with the error's own status (else 403).
    throw Object.assign(err as AppError, { status: 400 });
  }
}

/** A 400 naming the first string or member name that Postgres text cannot hold. */
export function assertStorableJson(body: unknown): void {
  const path = firstUnstorableText(body);
  if (path === undefined) return;
  const message = 'a string holds U+0000 or a lone surrogate, which cannot be accepted';
  throw new AppError('invalid_request', message, [
    detail('UK.OBIE.Field.Invalid', message, path === '' ? 'body' : path),
  ]);
}

/** Raw bytes to a JSON value: valid UTF-8, valid JSON, storable text only; else a 400. */
export function parseJsonBytes(bytes: Uint8Array): unknown {
  const text = decodeUtf8(bytes);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    const message = 'request body is not valid JSON';
    throw new AppError('invalid_request', message, [
      detail('UK.OBIE.Resource.InvalidFormat', message),
    ]);
  }
  assertStorableJson(body);
  return body;
}
