// "Can Postgres store this string?" PostgreSQL `text` (and `jsonb`) cannot hold U+0000, and a
// string holding a lone UTF-16 surrogate has no UTF-8 form at all: either one, sent to the
// database, fails the whole statement (SQLSTATE 22021 / 22P05) and, in a batched statement,
// every request batched with it. So every value a caller sends is checked here, at the boundary,
// and refused there with the endpoint's own 4xx.

// NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
// eslint-disable-next-line no-control-regex -- finding NUL is the point
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `value` is well-formed UTF-16 without U+0000: storable as Postgres text. */
export function isStorableText(value: string): boolean {
  return !UNSTORABLE.test(value);
}

/**
 * The path (`a.b[2]`, or `a` for a member name) of the first string or member name in a parsed
 * JSON value that is not storable text; undefined when all are. Iterative, so a deeply nested
 * body cannot exhaust the stack.
 */
export function firstUnstorableText(value: unknown): string | undefined {
  const stack: { value: unknown; path: string }[] = [{ value, path: '' }];
  while (stack.length > 0) {
    const { value: v, path } = stack.pop()!;
    if (typeof v === 'string') {
      if (!isStorableText(v)) return path;
    } else if (Array.isArray(v)) {
      v.forEach((item, i) => stack.push({ value: item, path: `${path}[${i}]` }));
    } else if (typeof v === 'object' && v !== null) {
      for (const [key, item] of Object.entries(v)) {
        const member = path === '' ? safeKey(key) : `${path}.${safeKey(key)}`;
        if (!isStorableText(key)) return member;
        stack.push({ value: item, path: member });
      }
    }
  }
  return undefined;
}

// A member name goes into an error message: make it printable, and short.
function safeKey(key: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is replaced
  const printable = key.replace(/[\u0000-\u001f\u007f\uD800-\uDFFF]/g, '?');
  return printable.length > 64 ? `${printable.slice(0, 63)}…` : printable;
}
