// Injected into the CLI bundle for the free name `navigator` (scripts/bundleCli.mjs): Node.js 21+
// has a global navigator; on Node.js 20, pg (lib/stream.js) tells it is not on Cloudflare Workers
// by constructing a `Response`, which loads Node's internal fetch (~45 ms of a CLI command's
// start-up). With this, bundled code sees what Node.js 21+ shows: a non-Cloudflare user agent.
export const navigator = globalThis.navigator ?? { userAgent: `Node.js/${process.versions.node}` };
