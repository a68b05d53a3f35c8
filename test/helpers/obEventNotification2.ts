// Checks SET claims against OBEventNotification2 as the OBIE prose defines it (no official schema
// exists; see obEventNotification2.schema.json). Resource-update SETs are also checked against
// the official OBEventNotification1 with expectObieShape.
import fs from 'node:fs';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

let validator: ValidateFunction | undefined;

function validate(): ValidateFunction {
  if (validator) return validator;
  const schema = JSON.parse(
    fs.readFileSync(path.join(import.meta.dirname, 'obEventNotification2.schema.json'), 'utf8'),
  ) as object;
  const ajv = new Ajv({ strict: true, strictRequired: false, allErrors: true });
  (addFormatsModule as unknown as (a: Ajv) => void)(ajv);
  validator = ajv.compile(schema);
  return validator;
}

/** Ajv's errors, or null when `value` is a valid OBEventNotification2. */
export function obEventNotification2Errors(value: unknown): string | null {
  const v = validate();
  return v(value) ? null : JSON.stringify(v.errors);
}

export function expectObEventNotification2(value: unknown): void {
  const errors = obEventNotification2Errors(value);
  if (errors) {
    throw new Error(`OBEventNotification2 mismatch: ${errors}\nvalue: ${JSON.stringify(value)}`);
  }
}
