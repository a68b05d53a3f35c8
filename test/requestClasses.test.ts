// Requests and responses are born with the express app's prototypes (src/http/requestClasses.ts):
// express's Object.setPrototypeOf on entry then changes nothing, and V8 keeps sharing their
// hidden classes (about 40 µs per request otherwise). What express offers through the prototypes
// (req.get, req.app, res.status, res.json) works as before.
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Router } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminApp } from '../src/http/adminApp.js';
import { createApiApp } from '../src/http/apiApp.js';
import {
  closeGracefully,
  createAdminServer,
  createApiServer,
  listen,
} from '../src/http/listeners.js';
import type { ServedApp } from '../src/http/requestClasses.js';
import { silentLogger } from '../src/logger.js';
import { call, mtlsAgent } from './helpers/http.js';
import { readPki, testPki } from './helpers/server.js';

const pki = readPki();

describe('request classes', () => {
  const closers: (() => Promise<void>)[] = [];
  let api: { url: string; app: ServedApp; arrived: unknown[]; protoInRoute: unknown[] };
  let admin: { url: string; app: ServedApp; arrived: unknown[] };

  beforeAll(async () => {
    const protoInRoute: unknown[] = [];
    const router = Router();
    router.get('/probe', (req, res) => {
      protoInRoute.push(Object.getPrototypeOf(req));
      res.status(200).json({ header: req.get('x-probe'), hasApp: req.app !== undefined });
    });
    const app = createApiApp({ logger: silentLogger(), routers: [router] });
    const p = testPki();
    const server = createApiServer(app, {
      certFile: p.serverCert,
      keyFile: p.serverKey,
      clientCaFile: p.caCert,
      allowConnectionsWithoutCertificate: false,
    });
    // Before the app's own listener: the prototype the request was made with.
    const arrived: unknown[] = [];
    server.prependListener('request', (req: IncomingMessage) =>
      arrived.push(Object.getPrototypeOf(req)),
    );
    const address: AddressInfo = await listen(server, '127.0.0.1', 0);
    closers.push(() => closeGracefully(server, 1_000));
    api = { url: `https://127.0.0.1:${address.port}`, app, arrived, protoInRoute };

    const adminApp = createAdminApp({
      logger: silentLogger(),
      readiness: async () => ({ ready: true, checks: {} }),
      routers: [],
    });
    const adminServer = createAdminServer(adminApp);
    const adminArrived: unknown[] = [];
    adminServer.prependListener('request', (req: IncomingMessage) =>
      adminArrived.push(Object.getPrototypeOf(req)),
    );
    const adminAddress: AddressInfo = await listen(adminServer, '127.0.0.1', 0);
    closers.push(() => closeGracefully(adminServer, 1_000));
    admin = { url: `http://127.0.0.1:${adminAddress.port}`, app: adminApp, arrived: adminArrived };
  });
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('when a request reaches the API listener, then node made it with the prototype express gives it, and express’s methods work', async () => {
    const agent = mtlsAgent({ ca: pki.ca, cert: pki.tppCert, key: pki.tppKey });
    const res = await call(agent, `${api.url}/probe`, { headers: { 'x-probe': 'p1' } });
    await agent.close();
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ header: 'p1', hasApp: true });
    const proto = api.app.classes.IncomingMessage.prototype;
    expect(api.arrived[0]).toBe(proto);
    // express's setPrototypeOf left it as it was born.
    expect(api.protoInRoute[0]).toBe(proto);
  });

  it('when a request reaches the admin listener, then it too is made with its app’s prototype', async () => {
    const res = await fetch(`${admin.url}/health/live`);
    expect(res.status).toBe(200);
    expect(admin.arrived[0]).toBe(admin.app.classes.IncomingMessage.prototype);
  });
});
