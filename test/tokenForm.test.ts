// The token form reader must give exactly what body-parser gives (express.urlencoded, extended:
// false, the same limits), whichever path a body takes: read here (plain names, UTF-8, known
// length) or handed to body-parser with the bytes already read.
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseTokenForm,
  TOKEN_FORM_LIMIT_BYTES,
  TOKEN_FORM_MAX_FIELDS,
} from '../src/http/bodyPolicy.js';
import { parsePlainForm, tokenFormReader } from '../src/http/tokenForm.js';

const reader = tokenFormReader({
  limitBytes: TOKEN_FORM_LIMIT_BYTES,
  maxFields: TOKEN_FORM_MAX_FIELDS,
  fallback: parseTokenForm,
});

/** An app that answers with what the parser made of the body (or the error's status). */
function echo(parser: RequestHandler) {
  const app = express();
  app.post('/token', parser, (req, res) => {
    res.json({ status: 200, body: req.body as unknown });
  });
  const onError: ErrorRequestHandler = (err: { status?: number }, _req, res, _next) => {
    res.json({ status: err.status ?? 500 });
  };
  app.use(onError);
  return app;
}

describe('tokenFormReader', () => {
  const servers: Server[] = [];
  let bodyParserUrl = '';
  let readerUrl = '';

  beforeAll(async () => {
    const listen = (app: express.Express) =>
      new Promise<string>((resolve) => {
        const server = app.listen(0, '127.0.0.1', () =>
          resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/token`),
        );
        servers.push(server);
      });
    bodyParserUrl = await listen(echo(parseTokenForm));
    readerUrl = await listen(echo(reader));
  });

  afterAll(() => servers.forEach((s) => s.close()));

  async function both(body: string | Buffer, headers: Record<string, string> = {}) {
    const send = async (url: string) => {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
      });
      return (await res.json()) as unknown;
    };
    return { expected: await send(bodyParserUrl), actual: await send(readerUrl) };
  }

  const assertion = 'eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJ0cHAtMSJ9.c2lnbmF0dXJl';
  const bodies = [
    `grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=${assertion}`,
    'grant_type=client_credentials&scope=accounts+payments&client_id=tpp-1',
    'grant_type=client_credentials&grant_type=password',
    'a=1&a=2&a=3',
    'constructor=x&toString=y&hasOwnProperty=z',
    '__proto__=x&grant_type=client_credentials',
    'a[b]=1&c[]=2',
    'a%5Bb%5D=1',
    'a=b]=c',
    '%61=1',
    'a+b=c',
    '=x&grant_type=client_credentials',
    'grant_type',
    '&&grant_type=client_credentials&&',
    'a=%ZZ&b=%E2%82&c=%F0%9F%98%80&d=%00',
    'scope=%5Baccounts%5D',
    'a.b=1',
    '',
    '\uFEFFgrant_type=client_credentials',
    'grant_type=caf\u00e9',
    Array.from({ length: TOKEN_FORM_MAX_FIELDS }, (_, i) => `p${i}=${i}`).join('&'),
    Array.from({ length: TOKEN_FORM_MAX_FIELDS + 1 }, (_, i) => `p${i}=${i}`).join('&'),
    `client_assertion=${'x'.repeat(TOKEN_FORM_LIMIT_BYTES)}`,
  ];

  it.each(bodies.map((b) => [b.length > 60 ? `${b.slice(0, 57)}...` : b, b]))(
    'when the body is %j, then the same as body-parser',
    async (_name, body) => {
      const { expected, actual } = await both(body);
      expect(actual).toEqual(expected);
    },
  );

  it('when the bytes are not UTF-8, then the same replacement characters as body-parser', async () => {
    const body = Buffer.concat([
      Buffer.from('scope='),
      Buffer.from([0xff, 0xc3]),
      Buffer.from('x'),
    ]);
    const { expected, actual } = await both(body);
    expect(actual).toEqual(expected);
  });

  it.each([
    ['charset=utf-8', { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }],
    ['charset="UTF-8"', { 'content-type': 'application/x-www-form-urlencoded; charset="UTF-8"' }],
    [
      'charset=iso-8859-1',
      { 'content-type': 'application/x-www-form-urlencoded; charset=iso-8859-1' },
    ],
    ['charset=utf-16', { 'content-type': 'application/x-www-form-urlencoded; charset=utf-16' }],
  ])('when the content type says %s, then the same as body-parser', async (_name, headers) => {
    const { expected, actual } = await both('grant_type=client_credentials&scope=caf%E9', headers);
    expect(actual).toEqual(expected);
  });

  it('when the body is gzip-compressed, then body-parser reads it, as before', async () => {
    const { expected, actual } = await both(gzipSync('grant_type=client_credentials'), {
      'content-encoding': 'gzip',
    });
    expect(actual).toEqual(expected);
    expect(actual).toEqual({ status: 200, body: { grant_type: 'client_credentials' } });
  });

  it('when a body has plain names only, then it is read here; brackets, escapes in names or too many fields are not', () => {
    const plain = (s: string) => parsePlainForm(Buffer.from(s), TOKEN_FORM_MAX_FIELDS);
    expect(plain('grant_type=client_credentials&scope=a+b')).toEqual({
      grant_type: 'client_credentials',
      scope: 'a b',
    });
    expect(plain('a[b]=1')).toBeUndefined();
    expect(plain('%61=1')).toBeUndefined();
    expect(plain('__proto__=1')).toBeUndefined();
    expect(plain('=1')).toBeUndefined();
    expect(
      plain(Array.from({ length: TOKEN_FORM_MAX_FIELDS + 1 }, (_, i) => `p${i}=1`).join('&')),
    ).toBeUndefined();
  });
});
