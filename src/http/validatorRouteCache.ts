// express-openapi-validator 5.x looks up a request's OpenAPI route by compiling, on every request,
// a path-to-regexp for every route of the document (openapi.metadata.js lookupRoute): a few
// percent of a GET's server CPU, for results that never change. This memoises the
// `pathToRegexp` export that it calls (through the module's exports object, at call time) for
// the string routes and options it passes. The result ({ regexp, keys }) is only read: the regexp
// has no `g` or `y` flag, so exec keeps no state. express's own router is unaffected: it calls its
// module-local binding, once per route at start-up.
import { createRequire } from 'node:module';

const MAX_ROUTES = 1_000;

type PathToRegexp = (path: unknown, options?: Record<string, unknown>) => unknown;

let installed = false;

export function memoiseValidatorRouteRegexps(): void {
  if (installed) return;
  installed = true;
  const require = createRequire(import.meta.url);
  const fromValidator = createRequire(require.resolve('express-openapi-validator'));
  const module = fromValidator('path-to-regexp') as { pathToRegexp?: PathToRegexp };
  const original = module.pathToRegexp;
  if (typeof original !== 'function') return;
  const cache = new Map<string, unknown>();
  module.pathToRegexp = (path, options) => {
    const keys = options ? Object.keys(options) : [];
    if (typeof path !== 'string' || keys.some((k) => k !== 'sensitive' && k !== 'strict')) {
      return original(path, options);
    }
    const key = `${options?.sensitive === true ? 1 : 0}${options?.strict === true ? 1 : 0}${path}`;
    let compiled = cache.get(key);
    if (compiled === undefined) {
      compiled = original(path, options);
      if (cache.size < MAX_ROUTES) cache.set(key, compiled);
    }
    return compiled;
  };
}
