// A TPP's signing keys by reference: its `jwks_uri` (for example the directory's keystore URL).
// The URL is the TPP's (or the directory's), so it is fetched like a callback: HTTPS only,
// through the push connector that applies the callback address policy to the address actually
// dialled (src/push/safeConnector.ts), no redirects, a time-out, and a size cap on the body.
//
// Each set is cached for CACHE_MS; a kid not in the cached set triggers one refetch, at most
// once per REFETCH_COOLDOWN_MS per URL, so a flood of made-up kids costs the TPP's server one
// request every half minute. When a refetch fails, the last good set is kept.
import type { Agent, request } from 'undici';
import type { JSONWebKeySet } from 'jose';
import type { Clock } from '../clock.js';

/** A JWK Set is a few kilobytes; the cap bounds what a hostile URL can make us read and parse. */
export const JWKS_MAX_BYTES = 64 * 1024;
export const JWKS_CACHE_MS = 5 * 60_000;
export const JWKS_REFETCH_COOLDOWN_MS = 30_000;
const TIMEOUT_MS = 5_000;

export class RemoteJwksError extends Error {
  override name = 'RemoteJwksError';
}

export interface RemoteJwksOptions {
  /** CALLBACK_ALLOW_PRIVATE_NETWORKS. */
  allowPrivate: boolean;
  /** PEM CAs trusted for the TPP's server (PUSH_CA_FILE); undefined: Node's default CAs. */
  ca?: string | Buffer | undefined;
  clock: Clock;
  /** Checks (and cleans) what was fetched; throws on an unusable set. */
  validate: (value: unknown) => Promise<JSONWebKeySet>;
}

interface Entry {
  jwks: JSONWebKeySet;
  fetchedAt: number;
  lastAttempt: number;
}

export class RemoteJwks {
  // undici and the connector load on the first fetch: most CLI commands never fetch a JWK Set,
  // and undici is ~1 MB of code to compile at start-up (issue 15: a command under 0.5 s).
  private http: Promise<{ agent: Agent; request: typeof request }> | undefined;
  private readonly cache = new Map<string, Entry>();

  constructor(private readonly opts: RemoteJwksOptions) {}

  private client(): Promise<{ agent: Agent; request: typeof request }> {
    return (this.http ??= (async () => {
      const [undici, { safeConnector }] = await Promise.all([
        import('undici').then((m) => m.default), // CommonJS: its exports are on default, bundled or not
        import('../push/safeConnector.js'),
      ]);
      const agent = new undici.Agent({
        connect: safeConnector({
          allowPrivate: this.opts.allowPrivate,
          ca: this.opts.ca,
          timeoutMs: TIMEOUT_MS,
        }),
      });
      return { agent, request: undici.request };
    })());
  }

  /** Fetches and validates the set now (registration: a wrong URL is refused at once). */
  async fetch(uri: string): Promise<JSONWebKeySet> {
    const jwks = await this.opts.validate(await this.download(uri));
    const now = this.opts.clock.now();
    this.remember(uri, { jwks, fetchedAt: now, lastAttempt: now });
    return jwks;
  }

  /**
   * The set, from the cache when fresh and (if a kid is given) holding that kid; otherwise
   * fetched again, within the cooldown. Throws only when no set was ever fetched.
   */
  async keys(uri: string, kid?: string): Promise<JSONWebKeySet> {
    const now = this.opts.clock.now();
    const hit = this.cache.get(uri);
    const fresh = hit !== undefined && now - hit.fetchedAt < JWKS_CACHE_MS;
    const hasKid = kid === undefined || hit?.jwks.keys.some((k) => k.kid === kid) === true;
    if (hit && fresh && hasKid) return hit.jwks;
    if (hit && now - hit.lastAttempt < JWKS_REFETCH_COOLDOWN_MS) return hit.jwks;
    if (hit) hit.lastAttempt = now;
    try {
      return await this.fetch(uri);
    } catch (err) {
      if (hit) return hit.jwks;
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.http) await (await this.http).agent.close();
  }

  private remember(uri: string, entry: Entry): void {
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(uri, entry);
  }

  private async download(uri: string): Promise<unknown> {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new RemoteJwksError(`jwks_uri ${uri} is not a URL`);
    }
    if (url.protocol !== 'https:') throw new RemoteJwksError('jwks_uri must be https');
    let res: Awaited<ReturnType<typeof request>>;
    try {
      const { agent, request } = await this.client();
      res = await request(url, {
        dispatcher: agent,
        method: 'GET',
        headers: { accept: 'application/jwk-set+json, application/json' },
        headersTimeout: TIMEOUT_MS,
        // Rare requests: no keep-alive socket left to hold a CLI process open.
        reset: true,
        bodyTimeout: TIMEOUT_MS,
      });
    } catch (err) {
      throw new RemoteJwksError(`GET ${uri} failed: ${(err as Error).message}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > JWKS_MAX_BYTES) {
        res.body.destroy();
        throw new RemoteJwksError(`GET ${uri}: the JWK Set is larger than ${JWKS_MAX_BYTES} bytes`);
      }
      chunks.push(chunk);
    }
    if (res.statusCode !== 200) {
      throw new RemoteJwksError(`GET ${uri} answered ${res.statusCode}`);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new RemoteJwksError(`GET ${uri}: not JSON`);
    }
  }
}
