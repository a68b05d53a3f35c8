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

/** Options of `sensitive` and `strict` only (what the validator passes): safe to memoise. */
function onlyFlags(options: Record<string, unknown> | undefined): boolean {
  if (options === undefined) return true;
  for (const key in options) if (key !== 'sensitive' && key !== 'strict') return false;
  return true;
}

export function memoiseValidatorRouteRegexps(): void {
  if (installed) return;
  installed = true;
  const require = createRequire(import.meta.url);
  const fromValidator = createRequire(require.resolve('express-openapi-validator'));
  const module = fromValidator('path-to-regexp') as { pathToRegexp?: PathToRegexp };
  const original = module.pathToRegexp;
  if (typeof original !== 'function') return;
  // By route, then by the four combinations of the two flags: no key is built per call.
  const cache = new Map<string, unknown[]>();
  module.pathToRegexp = (path, options) => {
    if (typeof path !== 'string' || !onlyFlags(options)) return original(path, options);
    const flags = (options?.sensitive === true ? 1 : 0) + (options?.strict === true ? 2 : 0);
    let byFlags = cache.get(path);
    if (byFlags === undefined) {
      byFlags = [];
      if (cache.size < MAX_ROUTES) cache.set(path, byFlags);
    }
    return (byFlags[flags] ??= original(path, options));
  };
}
