// openapi/openapi.yaml is the contract; openapi/openapi.json (what the server loads) and
// src/http/openapi-types.ts (what handlers are typed with) are generated from it by
// `npm run openapi:types`. This is how CI fails when someone edits one without the others.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generate, JSON_OUT, TYPES_OUT } from '../openapi/generate.js';
import { expectObieShape, obieSchemasAvailable } from './helpers/obieSchema.js';

describe('the OpenAPI document', () => {
  it('when the types are regenerated from openapi.yaml, then they equal the committed src/http/openapi-types.ts', async () => {
    const { types } = await generate();
    expect(
      fs.readFileSync(TYPES_OUT, 'utf8') === types,
      'src/http/openapi-types.ts is stale: run `npm run openapi:types`',
    ).toBe(true);
  });

  it('when openapi.yaml is converted, then it equals the committed openapi/openapi.json', async () => {
    const { document } = await generate();
    const committed = JSON.parse(fs.readFileSync(JSON_OUT, 'utf8')) as unknown;
    expect(committed, 'openapi/openapi.json is stale: run `npm run openapi:types`').toEqual(
      JSON.parse(JSON.stringify(document)),
    );
  });

  it.skipIf(!obieSchemasAvailable)(
    'when our schemas are compared with the official OBIE 3.1.11 ones, then every shared schema is the same shape',
    async () => {
      const ours = (await generate()).document as {
        components: { schemas: Record<string, unknown> };
      };
      const official = JSON.parse(
        fs.readFileSync(
          new URL('../../shared/conformance/obie/v3.1.11/events-openapi.json', import.meta.url),
          'utf8',
        ),
      ) as { components: { schemas: Record<string, unknown> } };
      // Descriptions and the x-namespaced-enum annotation do not change a shape.
      const shape = (v: unknown): unknown =>
        Array.isArray(v)
          ? v.map(shape)
          : v && typeof v === 'object'
            ? Object.fromEntries(
                Object.entries(v)
                  .filter(([k]) => k !== 'description' && k !== 'x-namespaced-enum')
                  .map(([k, x]) => [k, shape(x)]),
              )
            : v;
      for (const name of Object.keys(official.components.schemas)) {
        expect(shape(ours.components.schemas[name]), name).toEqual(
          shape(official.components.schemas[name]),
        );
      }
    },
  );

  it('when an example subscription is valid for the official schema, then it is for ours too (and the reverse for a bad one)', () => {
    // a guard that the OBIE checker itself runs: a shape check that cannot fail proves nothing
    expectObieShape('OBEventSubscription1', { Data: { Version: '3.1' } });
    if (obieSchemasAvailable) {
      expect(() => expectObieShape('OBEventSubscription1', { Data: {} })).toThrow();
    }
  });
});
