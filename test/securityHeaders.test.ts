// helmet's headers computed once (src/http/securityHeaders.ts): replaying the recorded steps gives
// a response exactly the headers helmet() itself would set.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type RequestHandler } from 'express';
import helmet from 'helmet';
import { describe, expect, it } from 'vitest';
import { helmetHeaderSteps, securityHeaders } from '../src/http/securityHeaders.js';

async function headersFrom(middleware: RequestHandler): Promise<string[]> {
  const app = express();
  app.use(middleware);
  app.get('/', (_req, res) => res.send('ok'));
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const raw = await new Promise<string[]>((resolve, reject) =>
      http
        .get(`http://127.0.0.1:${port}/`, (res) => {
          res.resume();
          res.on('end', () => resolve(res.rawHeaders));
        })
        .on('error', reject),
    );
    return raw.filter((_v, i, all) => all[i - (i % 2)]!.toLowerCase() !== 'date');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('security headers', () => {
  it("when helmet's recorded steps are replayed, then the response has exactly helmet's headers, in its order", async () => {
    const replayed = await headersFrom(securityHeaders(helmetHeaderSteps()));
    expect(replayed).toEqual(await headersFrom(helmet()));
    expect(replayed).toContain('Strict-Transport-Security');
  });
});
