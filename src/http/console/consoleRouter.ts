// The operator console at /console on the admin listener: server-rendered pages over the same
// domain operations as the CLI and the admin API (src/domain/operations.ts).
//
// Security, in the order a request meets it:
//   1. response headers: a strict Content-Security-Policy (no script at all), no framing, no
//      caching, no referrer;
//   2. authentication: an HttpOnly, SameSite=Strict session cookie (Secure in production) from
//      a log-in with the operator credential; log-in failures are throttled per address and
//      audited;
//   3. CSRF: every POST carries the session's synchronizer token (the log-in form a
//      double-submit token), compared in constant time;
//   4. output: every value is escaped by the html template (src/http/console/html.ts).
import { randomBytes } from 'node:crypto';
import express, {
  Router,
  type ErrorRequestHandler,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import type { Clock } from '../../clock.js';
import { DELIVERY_STATES } from '../../db/stores/pushStore.js';
import { SESSION_HOURS, sameSecret, type OperatorAuth } from '../../domain/operatorAuth.js';
import { parseTime, type Actor, type Operations } from '../../domain/operations.js';
import { AppError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { href } from './html.js';
import * as pages from './pages.js';

export interface ConsoleDeps {
  operations: Operations;
  auth: OperatorAuth;
  clock: Clock;
  logger: Logger;
  /** Production: the session cookie is Secure (serve the console through TLS). */
  secureCookies: boolean;
}

const SESSION_COOKIE = 'ob_console';
const LOGIN_COOKIE = 'ob_console_login';
const MAX_FAILURES = 5;
const FAILURE_WINDOW_MS = 15 * 60_000;
const PAGE = 50;

const NOTICES: Record<string, (n: string) => string> = {
  replayed: () =>
    'The SET is pending again: it will be pushed (if the TPP has a CallbackUrl) and can be polled.',
  rearmed: () => 'The SET’s push is due again.',
  already_pending: () => 'The SET was already pending: nothing to do.',
  replayed_since: (n) => `Replay since T: ${n}.`,
  purged: () => 'The dead letter was purged: it will not be delivered.',
  rotated: (n) => `A new signing key is active: ${n}.`,
};

export function consoleRouter(deps: ConsoleDeps): Router {
  const { operations: ops, auth } = deps;
  const router = Router();
  const failures = new Map<string, { count: number; since: number }>();

  router.use('/console', securityHeaders);
  router.get('/console/style.css', (_req, res) => {
    res.type('text/css').setHeader('Cache-Control', 'no-cache');
    res.send(pages.STYLESHEET);
  });
  router.use('/console', (req, res, next) => {
    if (auth.enabled) {
      next();
      return;
    }
    res.status(503).type('html').send(pages.disabledPage());
  });
  router.use('/console', express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 20 }));

  router.get('/console/login', (_req, res) => {
    const token = randomBytes(24).toString('base64url');
    res.setHeader('Set-Cookie', cookie(LOGIN_COOKIE, token, 600, deps.secureCookies));
    res.type('html').send(pages.loginPage(token));
  });

  router.post('/console/login', async (req, res) => {
    const form = formOf(req);
    const cookieToken = cookies(req).get(LOGIN_COOKIE);
    if (!cookieToken || !form._csrf || !sameSecret(cookieToken, form._csrf)) {
      res
        .status(403)
        .type('html')
        .send(pages.errorPage(403, 'The log-in form expired: load it again.'));
      return;
    }
    const ip = req.socket.remoteAddress ?? 'unknown';
    const now = deps.clock.now();
    const f = failures.get(ip);
    if (f && now - f.since < FAILURE_WINDOW_MS && f.count >= MAX_FAILURES) {
      res
        .status(429)
        .type('html')
        .send(pages.loginPage(cookieToken, 'Too many failed log-ins: wait 15 minutes.'));
      return;
    }
    const operator = (form.operator ?? '').trim().slice(0, 200);
    const session = operator ? await auth.login(operator, form.password ?? '') : undefined;
    await ops.recordLogin({ via: 'console', name: operator || '(none)' }, session !== undefined, {
      ip,
    });
    if (!session) {
      const current = f && now - f.since < FAILURE_WINDOW_MS ? f : { count: 0, since: now };
      failures.set(ip, { count: current.count + 1, since: current.since });
      deps.logger.warn({ ip }, 'console log-in refused');
      res.status(401).type('html').send(pages.loginPage(cookieToken, 'Wrong name or password.'));
      return;
    }
    failures.delete(ip);
    res.setHeader('Set-Cookie', [
      cookie(SESSION_COOKIE, session.token, SESSION_HOURS * 3600, deps.secureCookies),
      cookie(LOGIN_COOKIE, '', 0, deps.secureCookies),
    ]);
    res.redirect(303, '/console/');
  });

  // Everything below needs a session; POSTs also the CSRF token.
  router.use('/console', async (req, res, next) => {
    const token = cookies(req).get(SESSION_COOKIE);
    const session = await auth.session(token);
    if (!session) {
      if (req.method === 'GET') res.redirect(303, '/console/login');
      else res.status(401).type('html').send(pages.errorPage(401, 'Log in first.'));
      return;
    }
    if (req.method === 'POST') {
      const given = formOf(req)._csrf;
      if (!given || !sameSecret(given, session.csrfToken)) {
        res
          .status(403)
          .type('html')
          .send(
            pages.errorPage(403, 'Missing or wrong CSRF token: reload the page and try again.'),
          );
        return;
      }
    }
    res.locals.console = {
      operator: session.operator,
      csrfToken: session.csrfToken,
      token,
    };
    next();
  });

  const ctx = (req: Request, res: Response): pages.PageContext => {
    const done = typeof req.query.done === 'string' ? req.query.done : undefined;
    const n = typeof req.query.n === 'string' ? req.query.n.slice(0, 200) : '';
    const c = res.locals.console as { operator: string; csrfToken: string };
    return {
      operator: c.operator,
      csrfToken: c.csrfToken,
      notice: done && NOTICES[done] ? NOTICES[done](n) : undefined,
      now: deps.clock.now(),
    };
  };
  const actor = (res: Response): Actor => ({
    via: 'console',
    name: (res.locals.console as { operator: string }).operator,
  });

  router.post('/console/logout', async (_req, res) => {
    await auth.logout((res.locals.console as { token: string }).token);
    res.setHeader('Set-Cookie', cookie(SESSION_COOKIE, '', 0, deps.secureCookies));
    res.redirect(303, '/console/login');
  });

  router.get('/console/', async (req, res) => {
    html(res, pages.clientsPage(ctx(req, res), await ops.clientsOverview()));
  });

  router.get('/console/clients/:id', async (req, res) => {
    const clientId = String(req.params.id);
    const q = queryOf(req);
    const state =
      q.state && (DELIVERY_STATES as readonly string[]).includes(q.state) ? q.state : undefined;
    const overview = (await ops.clientsOverview()).find((c) => c.clientId === clientId);
    if (!overview) throw new AppError('not_found', `no client ${clientId}`);
    const sets = await ops.clientHistory(clientId, {
      limit: PAGE + 1,
      ...(state ? { state } : {}),
      ...(q.before ? { before: q.before } : {}),
    });
    const more = sets.length > PAGE;
    const page = more ? sets.slice(0, PAGE) : sets;
    html(
      res,
      pages.clientPage(ctx(req, res), overview, page, {
        state,
        next: more ? page[page.length - 1]!.jti : undefined,
        replayMax: ops.replayMaxSets,
      }),
    );
  });

  router.post('/console/clients/:id/replay-since', async (req, res) => {
    const clientId = String(req.params.id);
    const form = formOf(req);
    const since = parseTime(form.since ?? '', 'since');
    const limit = form.limit ? Number(form.limit) : undefined;
    const r = await ops.replaySince(clientId, since, limit, actor(res));
    const summary = `${r.replayed} SET(s) pending again, ${r.rearmed} push(es) due again${r.more ? '; more remain: run it again' : ''}`;
    res.redirect(303, href(['clients', clientId], { done: 'replayed_since', n: summary }));
  });

  router.get('/console/sets/:jti', async (req, res) => {
    const jti = String(req.params.jti);
    const history = await ops.history(jti);
    const dead =
      history.state === 'errored' ||
      (history.state === 'pending' && history.pushState === 'failed');
    html(res, pages.setPage(ctx(req, res), history, dead));
  });

  router.post('/console/sets/:jti/replay', async (req, res) => {
    const r = await ops.replay(String(req.params.jti), actor(res));
    res.redirect(303, href(['sets', r.jti], { done: r.outcome }));
  });

  router.get('/console/search', async (req, res) => {
    const q = queryOf(req);
    const asked = Boolean(q.jti || q.subject || q.client || q.from || q.to);
    const results = asked
      ? await ops.search({
          limit: 100,
          ...(q.jti ? { jti: q.jti.trim() } : {}),
          ...(q.subject ? { subjectId: q.subject.trim() } : {}),
          ...(q.client ? { clientId: q.client.trim() } : {}),
          ...(q.from ? { from: parseTime(q.from, 'from') } : {}),
          ...(q.to ? { to: parseTime(q.to, 'to') } : {}),
        })
      : undefined;
    html(res, pages.searchPage(ctx(req, res), q, results));
  });

  router.get('/console/dead-letters', async (req, res) => {
    const q = queryOf(req);
    const list = await ops.deadLetters({
      limit: 200,
      ...(q.client ? { clientId: q.client.trim() } : {}),
    });
    html(res, pages.deadLettersPage(ctx(req, res), list, q.client));
  });

  router.post('/console/dead-letters/:jti/retry', async (req, res) => {
    const r = await ops.retryDeadLetter(String(req.params.jti), actor(res));
    res.redirect(303, href(['sets', r.jti], { done: r.outcome }));
  });

  router.post('/console/dead-letters/:jti/purge', async (req, res) => {
    const r = await ops.purgeDeadLetter(String(req.params.jti), actor(res));
    res.redirect(303, href(['dead-letters'], { done: r.status }));
  });

  router.get('/console/keys', async (req, res) => {
    html(res, pages.keysPage(ctx(req, res), await ops.listKeys()));
  });

  router.post('/console/keys/rotate', async (_req, res) => {
    const key = await ops.rotateKeys(actor(res));
    res.redirect(303, href(['keys'], { done: 'rotated', n: key.kid }));
  });

  router.get('/console/audit', async (req, res) => {
    html(res, pages.auditPage(ctx(req, res), await ops.auditLog({ limit: 200 })));
  });

  const consoleErrors: ErrorRequestHandler = (err: unknown, req, res, next) => {
    if (res.headersSent || !req.path.startsWith('/console')) {
      next(err);
      return;
    }
    const c = res.locals.console ? ctx(req, res) : undefined;
    if (err instanceof AppError) {
      const status = ({ not_found: 404, conflict: 409, invalid_request: 400 } as const)[
        err.kind as 'not_found' | 'conflict' | 'invalid_request'
      ];
      const detail = err.details[0]?.message ?? err.message;
      res
        .status(status ?? 400)
        .type('html')
        .send(pages.errorPage(status ?? 400, detail, c));
      return;
    }
    deps.logger.error({ err }, 'console: unexpected error');
    res
      .status(500)
      .type('html')
      .send(pages.errorPage(500, 'Something went wrong; see the server log.', c));
  };
  router.use(consoleErrors);
  return router;
}

const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader(
    'Content-Security-Policy',
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  );
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
  next();
};

function html(res: Response, body: string): void {
  res.type('html').send(body);
}

function cookie(name: string, value: string, maxAgeSeconds: number, secure: boolean): string {
  return [
    `${name}=${value}`,
    'Path=/console',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${maxAgeSeconds}`,
    ...(secure ? ['Secure'] : []),
  ].join('; ');
}

function cookies(req: Request): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

function formOf(req: Request): Record<string, string | undefined> {
  const body = (req.body ?? {}) as Record<string, unknown>;
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(body)) if (typeof v === 'string') out[k] = v;
  return out;
}

function queryOf(req: Request): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(req.query as Record<string, unknown>)) {
    if (typeof v === 'string' && v.length <= 300) out[k] = v;
  }
  return out;
}
