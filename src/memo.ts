// Get-or-compute for the small caches of the hot paths (a connection's certificate and chain, a
// certificate's thumbprint and subject, a stored subscription's answer): one shape, so each cache
// reads as what it keeps. `make` runs again while it returns undefined.
interface Cache<K, V> {
  get(key: K): V | undefined;
  set(key: K, value: V): unknown;
}

export function memoised<K, V>(cache: Cache<K, V>, key: K, make: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    if (value !== undefined) cache.set(key, value);
  }
  return value;
}
