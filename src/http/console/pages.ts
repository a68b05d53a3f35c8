// The console's pages: plain server-rendered HTML, no script at all, one small stylesheet. Every
// form that changes something is a POST carrying the session's CSRF token.
import type {
  AuditEntry,
  ClientOverview,
  DeadLetter,
  SetHistory,
} from '../../db/stores/operationsStore.js';
import type { KeyInfo } from '../../domain/signingKeys.js';
import { age, href, html, time, type Html } from './html.js';

export interface PageContext {
  operator: string;
  csrfToken: string;
  notice?: string | undefined;
  now: number;
}

export function layout(title: string, body: Html, ctx?: PageContext): string {
  const nav = ctx
    ? html`<nav>
        <a href="/console/">Clients</a>
        <a href="/console/search">Search</a>
        <a href="/console/dead-letters">Dead letters</a>
        <a href="/console/keys">Signing keys</a>
        <a href="/console/audit">Audit</a>
        <form method="post" action="/console/logout" class="inline">
          ${csrf(ctx)}<span class="who">${ctx.operator}</span>
          <button type="submit">Log out</button>
        </form>
      </nav>`
    : '';
  const notice = ctx?.notice ? html`<p class="notice" role="status">${ctx.notice}</p>` : '';
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · ob-events console</title>
        <link rel="stylesheet" href="/console/style.css" />
      </head>
      <body>
        <header><strong>ob-events</strong> operator console ${nav}</header>
        <main>
          <h1>${title}</h1>
          ${notice} ${body}
        </main>
      </body>
    </html>`.value;
}

function csrf(ctx: PageContext): Html {
  return html`<input type="hidden" name="_csrf" value="${ctx.csrfToken}" />`;
}

function postButton(ctx: PageContext, action: string, label: string, extra = ''): Html {
  return html`<form method="post" action="${action}" class="inline">
    ${csrf(ctx)}<button type="submit" class="${extra}">${label}</button>
  </form>`;
}

export function loginPage(loginCsrf: string, error?: string): string {
  return layout(
    'Log in',
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <form method="post" action="/console/login" class="login">
        <input type="hidden" name="_csrf" value="${loginCsrf}" />
        <label
          >Your name (recorded in the audit trail)
          <input name="operator" required maxlength="200" autocomplete="username"
        /></label>
        <label
          >Operator password
          <input name="password" type="password" required autocomplete="current-password"
        /></label>
        <button type="submit">Log in</button>
      </form>`,
  );
}

export function disabledPage(): string {
  return layout(
    'Console disabled',
    html`<p>
      Set <code>OPERATOR_PASSWORD</code> or <code>OPERATOR_PASSWORD_FILE</code> to enable the
      operator console.
    </p>`,
  );
}

export function errorPage(status: number, message: string, ctx?: PageContext): string {
  return layout(`Error ${status}`, html`<p class="error" role="alert">${message}</p>`, ctx);
}

function subscriptionCell(c: ClientOverview): Html {
  if (!c.subscription) return html`<span class="muted">none</span>`;
  const s = c.subscription;
  return html`${s.callbackUrl ? html`push: <code>${s.callbackUrl}</code>` : 'polling only'}<br />
    <span class="muted"
      >v${s.version} · ${s.eventTypes ? s.eventTypes.join(', ') : 'all event types'}</span
    >`;
}

function pushHealth(c: ClientOverview, now: number): Html {
  const breaker = c.breaker
    ? Date.parse(c.breaker.openUntil) > now
      ? html`<span class="bad">breaker open</span> until ${time(c.breaker.openUntil)} (trips
          ${c.breaker.trips})<br /><span class="muted">${c.breaker.lastError}</span>`
      : html`<span class="warn">breaker half-open</span>`
    : html`<span class="ok">breaker closed</span>`;
  if (!c.subscription?.callbackUrl) return html`<span class="muted">—</span>`;
  return html`${c.pushDue} due,
    ${c.pushFailed > 0 ? html`<span class="bad">${c.pushFailed} failed</span>` : '0 failed'}<br />${breaker}`;
}

export function clientsPage(ctx: PageContext, clients: ClientOverview[]): string {
  const rows = clients.map(
    (c) =>
      html`<tr>
        <td>
          <a href="${href(['clients', c.clientId])}">${c.clientId}</a><br /><span class="muted"
            >${c.name}</span
          >
        </td>
        <td class="${c.status === 'active' ? 'ok' : 'bad'}">${c.status}</td>
        <td>${subscriptionCell(c)}</td>
        <td class="num">${c.backlog}</td>
        <td>${c.oldestPendingAt ? html`${age(c.oldestPendingAt, ctx.now)} ago` : '—'}</td>
        <td>${time(c.lastHandoutAt)}</td>
        <td>${pushHealth(c, ctx.now)}</td>
      </tr>`,
  );
  return layout(
    'TPP clients',
    html`<table>
      <thead>
        <tr>
          <th>Client</th>
          <th>Status</th>
          <th>Subscription</th>
          <th>Backlog</th>
          <th>Oldest pending</th>
          <th>Last poll hand-out</th>
          <th>Push health</th>
        </tr>
      </thead>
      <tbody>
        ${
          rows.length
            ? rows
            : html`<tr>
                <td colspan="7" class="muted">No clients registered.</td>
              </tr>`
        }
      </tbody>
    </table>`,
    ctx,
  );
}

function lastAttempt(s: SetHistory): Html {
  const a = s.pushes[s.pushes.length - 1];
  if (!a) return html`<span class="muted">—</span>`;
  return html`${a.outcome} ${a.statusCode ?? ''} · ${a.latencyMs} ms<br /><span class="muted"
      >${time(a.at)}</span
    >`;
}

function setsTable(sets: SetHistory[], showClient: boolean): Html {
  const rows = sets.map(
    (s) =>
      html`<tr>
        <td>
          <a href="${href(['sets', s.jti])}"><code>${s.jti}</code></a>
        </td>
        ${showClient ? html`<td><a href="${href(['clients', s.clientId])}">${s.clientId}</a></td>` : ''}
        <td>${time(s.createdAt)}</td>
        <td>
          ${s.eventTypes.join(', ')}<br /><span class="muted">${s.subjectType} ${s.subjectId}</span>
        </td>
        <td class="state-${s.state}">
          ${s.state}${s.resolution ? html`<br /><span class="muted">${s.resolution}</span>` : ''}
        </td>
        <td>${s.pushState ?? '—'} (${s.pushes.length || s.pushAttempts})</td>
        <td class="num">${s.pollCount}</td>
        <td>${lastAttempt(s)}</td>
      </tr>`,
  );
  return html`<table>
    <thead>
      <tr>
        <th>jti</th>
        ${showClient ? html`<th>Client</th>` : ''}
        <th>Created</th>
        <th>Event</th>
        <th>State</th>
        <th>Push (attempts)</th>
        <th>Polled</th>
        <th>Last push attempt</th>
      </tr>
    </thead>
    <tbody>
      ${
        rows.length
          ? rows
          : html`<tr>
              <td colspan="8" class="muted">No SETs.</td>
            </tr>`
      }
    </tbody>
  </table>`;
}

export function clientPage(
  ctx: PageContext,
  client: ClientOverview,
  sets: SetHistory[],
  page: { state?: string | undefined; next?: string | undefined; replayMax: number },
): string {
  const states = ['', 'pending', 'acknowledged', 'errored', 'discarded'];
  return layout(
    `Deliveries of ${client.clientId}`,
    html`<p>
        ${client.name} ·
        <span class="${client.status === 'active' ? 'ok' : 'bad'}">${client.status}</span>
        · backlog ${client.backlog}
        ${client.oldestPendingAt ? html`(oldest ${age(client.oldestPendingAt, ctx.now)})` : ''} ·
        last poll hand-out ${time(client.lastHandoutAt)}
      </p>
      <p>${subscriptionCell(client)}</p>
      <p>${pushHealth(client, ctx.now)}</p>
      <section class="panel">
        <h2>Replay since T</h2>
        <p class="muted">
          Makes every acknowledged or rejected SET of this TPP created at or after T pending again
          (same jti, same bytes), at most ${page.replayMax} per run; run it again for more.
          Replaying twice adds nothing.
        </p>
        <form method="post" action="${href(['clients', client.clientId, 'replay-since'])}">
          ${csrf(ctx)}
          <label>T (UTC) <input name="since" type="datetime-local" step="1" required /></label>
          <label
            >At most
            <input
              name="limit"
              type="number"
              min="1"
              max="${page.replayMax}"
              value="${page.replayMax}"
          /></label>
          <button type="submit" class="danger">Replay since T</button>
        </form>
      </section>
      <form method="get" action="${href(['clients', client.clientId])}" class="filters">
        <label
          >State
          <select name="state">
            ${states.map((s) => html`<option value="${s}" ${s === (page.state ?? '') ? html`selected` : ''}>${s || 'any'}</option>`)}
          </select></label
        >
        <button type="submit">Filter</button>
      </form>
      ${setsTable(sets, false)}
      ${page.next ? html`<p><a href="${href(['clients', client.clientId], { state: page.state, before: page.next })}">Older →</a></p>` : ''}`,
    ctx,
  );
}

export function setPage(ctx: PageContext, s: SetHistory, deadLetter: boolean): string {
  const pushes = s.pushes.map(
    (a) =>
      html`<tr>
        <td class="num">${a.attempt}</td>
        <td>${time(a.at)}</td>
        <td>${a.outcome}</td>
        <td>${a.statusCode ?? '—'}</td>
        <td class="num">${a.latencyMs} ms</td>
        <td><code>${a.worker}</code></td>
        <td class="wrap">${a.error ?? ''}</td>
      </tr>`,
  );
  const polls = s.polls.map(
    (p) =>
      html`<tr>
        <td>${time(p.at)}</td>
        <td>${time(p.leaseUntil)}</td>
        <td><code>${p.replica}</code></td>
      </tr>`,
  );
  return layout(
    `SET ${s.jti}`,
    html`<dl>
        <dt>Client</dt>
        <dd><a href="${href(['clients', s.clientId])}">${s.clientId}</a></dd>
        <dt>Created</dt>
        <dd>${time(s.createdAt)}</dd>
        <dt>Event</dt>
        <dd>${s.eventTypes.join(', ')}</dd>
        <dt>Subject</dt>
        <dd>${s.subjectType} ${s.subjectId}</dd>
        <dt>State</dt>
        <dd class="state-${s.state}">
          ${s.state} ${s.resolution ? `(${s.resolution})` : ''}
          ${s.resolvedAt ? time(s.resolvedAt) : ''}
        </dd>
        <dt>Push</dt>
        <dd>${s.pushState ?? '—'}</dd>
        <dt>Error</dt>
        <dd>${s.err ? `${s.err}: ${s.errDescription ?? ''}` : '—'}</dd>
        <dt>Replays</dt>
        <dd>${s.replays}</dd>
      </dl>
      <p>
        ${postButton(ctx, href(['sets', s.jti, 'replay']), 'Replay this SET', 'danger')}
        ${
          deadLetter
            ? html`${postButton(ctx, href(['dead-letters', s.jti, 'retry']), 'Retry dead letter')}
              ${postButton(ctx, href(['dead-letters', s.jti, 'purge']), 'Purge dead letter', 'danger')}`
            : ''
        }
      </p>
      <h2>Push attempts</h2>
      <table>
        <thead>
          <tr>
            <th>#</th>
            <th>At</th>
            <th>Outcome</th>
            <th>Status</th>
            <th>Latency</th>
            <th>Replica</th>
            <th>Error</th>
          </tr>
        </thead>
        <tbody>
          ${
            pushes.length
              ? pushes
              : html`<tr>
                  <td colspan="7" class="muted">None.</td>
                </tr>`
          }
        </tbody>
      </table>
      <h2>Poll hand-outs</h2>
      <table>
        <thead>
          <tr>
            <th>At</th>
            <th>Leased until</th>
            <th>Replica</th>
          </tr>
        </thead>
        <tbody>
          ${
            polls.length
              ? polls
              : html`<tr>
                  <td colspan="3" class="muted">None.</td>
                </tr>`
          }
        </tbody>
      </table>`,
    ctx,
  );
}

export function searchPage(
  ctx: PageContext,
  q: Record<string, string | undefined>,
  results: SetHistory[] | undefined,
): string {
  return layout(
    'Search SETs',
    html`<form method="get" action="/console/search" class="filters">
        <label>jti <input name="jti" value="${q.jti ?? ''}" size="38" /></label>
        <label>Subject id <input name="subject" value="${q.subject ?? ''}" /></label>
        <label>Client <input name="client" value="${q.client ?? ''}" /></label>
        <label
          >From (UTC) <input name="from" type="datetime-local" step="1" value="${q.from ?? ''}"
        /></label>
        <label
          >To (UTC) <input name="to" type="datetime-local" step="1" value="${q.to ?? ''}"
        /></label>
        <button type="submit">Search</button>
      </form>
      ${results ? setsTable(results, true) : html`<p class="muted">By jti, or by subject, client and time (newest 100).</p>`}`,
    ctx,
  );
}

export function deadLettersPage(ctx: PageContext, list: DeadLetter[], client?: string): string {
  const rows = list.map(
    (d) =>
      html`<tr>
        <td>
          <a href="${href(['sets', d.jti])}"><code>${d.jti}</code></a>
        </td>
        <td><a href="${href(['clients', d.clientId])}">${d.clientId}</a></td>
        <td>${time(d.createdAt)}</td>
        <td>${d.kind === 'rejected' ? 'rejected by the TPP' : 'push gave up'}</td>
        <td class="wrap">${d.lastError ?? ''}</td>
        <td>
          ${postButton(ctx, href(['dead-letters', d.jti, 'retry']), 'Retry')}
          ${postButton(ctx, href(['dead-letters', d.jti, 'purge']), 'Purge', 'danger')}
        </td>
      </tr>`,
  );
  return layout(
    'Dead letters',
    html`<form method="get" action="/console/dead-letters" class="filters">
        <label>Client <input name="client" value="${client ?? ''}" /></label>
        <button type="submit">Filter</button>
      </form>
      <table>
        <thead>
          <tr>
            <th>jti</th>
            <th>Client</th>
            <th>Created</th>
            <th>Why</th>
            <th>Last error</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          ${
            rows.length
              ? rows
              : html`<tr>
                  <td colspan="6" class="muted">No dead letters.</td>
                </tr>`
          }
        </tbody>
      </table>`,
    ctx,
  );
}

export function keysPage(ctx: PageContext, keys: KeyInfo[]): string {
  const rows = keys.map(
    (k) =>
      html`<tr>
        <td><code>${k.kid}</code></td>
        <td>${k.status}</td>
        <td>${k.source}</td>
        <td>${time(k.activatedAt)}</td>
        <td>${time(k.retireAfter)}</td>
      </tr>`,
  );
  return layout(
    'Signing keys',
    html`<table>
        <thead>
          <tr>
            <th>kid</th>
            <th>Status</th>
            <th>Source</th>
            <th>Activated</th>
            <th>Retire after</th>
          </tr>
        </thead>
        <tbody>
          ${rows}
        </tbody>
      </table>
      <p class="muted">
        A rotation makes a new active key; every replica signs with it within seconds and the old
        public key stays in /jwks for the overlap (SIGNING_KEY_OVERLAP_DAYS).
      </p>
      ${postButton(ctx, '/console/keys/rotate', 'Rotate signing key', 'danger')}`,
    ctx,
  );
}

export function auditPage(ctx: PageContext, entries: AuditEntry[]): string {
  const rows = entries.map(
    (e) =>
      html`<tr>
        <td>${time(e.at)}</td>
        <td>${e.actor}</td>
        <td>${e.via}</td>
        <td>${e.action}</td>
        <td>${e.clientId ?? ''}</td>
        <td>${e.jti ? html`<a href="${href(['sets', e.jti])}"><code>${e.jti}</code></a>` : ''}</td>
        <td class="wrap"><code>${JSON.stringify(e.detail)}</code></td>
      </tr>`,
  );
  return layout(
    'Audit trail',
    html`<table>
      <thead>
        <tr>
          <th>At</th>
          <th>Who</th>
          <th>Via</th>
          <th>Action</th>
          <th>Client</th>
          <th>SET</th>
          <th>Detail</th>
        </tr>
      </thead>
      <tbody>
        ${
          rows.length
            ? rows
            : html`<tr>
                <td colspan="7" class="muted">Nothing yet.</td>
              </tr>`
        }
      </tbody>
    </table>`,
    ctx,
  );
}

export const STYLESHEET = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }
header { background: #0b3d5c; color: #fff; padding: 8px 16px; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
header nav { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
header a { color: #fff; }
.who { margin-right: 6px; opacity: .85; }
main { padding: 12px 16px; }
h1 { font-size: 20px; margin: 8px 0 12px; }
h2 { font-size: 16px; margin: 16px 0 8px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid #d8dde3; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
.num { text-align: right; }
.muted { color: #66717d; }
.ok { color: #17703a; } .bad { color: #b3261e; font-weight: 600; } .warn { color: #8a5a00; }
.wrap { max-width: 420px; word-break: break-word; }
.inline { display: inline; }
.notice { background: #e4f3e8; border: 1px solid #9ccfab; padding: 6px 10px; }
.error { background: #fbe9e7; border: 1px solid #e7a39c; padding: 6px 10px; }
.panel { background: #fff; border: 1px solid #d8dde3; padding: 8px 12px; margin: 12px 0; }
.filters, .panel form { display: flex; gap: 10px; align-items: end; flex-wrap: wrap; margin: 8px 0; }
.login { display: grid; gap: 10px; max-width: 320px; }
label { display: inline-flex; flex-direction: column; gap: 2px; font-size: 12px; color: #414b55; }
button { cursor: pointer; padding: 4px 10px; }
button.danger { background: #fff4f2; border: 1px solid #b3261e; color: #b3261e; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; background: #fff; padding: 8px 12px; border: 1px solid #d8dde3; }
dt { font-weight: 600; }
.state-pending { color: #8a5a00; } .state-acknowledged { color: #17703a; } .state-errored, .state-discarded { color: #b3261e; }
code { font-size: 12px; }
`;
