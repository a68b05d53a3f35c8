// Validates response bodies against the official OBIE OpenAPI files in ../shared/conformance.
// When ../shared is not there (a clone on its own), the checks that need it skip loudly.
import fs from 'node:fs';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

const CONFORMANCE = path.resolve(import.meta.dirname, '../../../shared/conformance/obie');

export const obieSchemasAvailable = fs.existsSync(CONFORMANCE);
if (!obieSchemasAvailable) {
  console.warn(`\n*** ../shared/conformance/obie not found: OBIE schema checks are SKIPPED ***\n`);
}

const cache = new Map<string, ValidateFunction>();

/** Validator for `#/components/schemas/<name>` of an official OBIE document. */
export function obieValidator(
  name: string,
  file = 'v3.1.11/events-openapi.json',
): ValidateFunction | undefined {
  if (!obieSchemasAvailable) return undefined;
  const key = `${file}#${name}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const doc = JSON.parse(fs.readFileSync(path.join(CONFORMANCE, file), 'utf8')) as object;
  const ajv = new Ajv({ strict: false, allErrors: true, formats: { int32: true, base64: true } });
  const addFormats = addFormatsModule as unknown as (a: Ajv) => void;
  addFormats(ajv);
  ajv.addSchema(doc, 'doc');
  const validate = ajv.compile({ $ref: `doc#/components/schemas/${name}` });
  cache.set(key, validate);
  return validate;
}

/** Throws with Ajv's errors when `value` does not match; no-op when the schemas are absent. */
export function expectObieShape(name: string, value: unknown, file?: string): void {
  const validate = obieValidator(name, file);
  if (!validate) return;
  if (!validate(value)) {
    throw new Error(
      `${name} mismatch: ${JSON.stringify(validate.errors, null, 2)}\nvalue: ${JSON.stringify(value)}`,
    );
  }
}
