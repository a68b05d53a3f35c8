// One HTTPS request over mTLS, reporting the response as sent: status line, header names in their
// spelling and order (Date left out: it changes), body.
import https from 'node:https';

export interface RawResponse {
  status: number;
  statusMessage: string;
  /** name, value, name, value, ... */
  headers: string[];
  body: string;
}

export function rawRequest(
  url: string,
  tls: { ca: string; cert?: string; key?: string },
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: init.method ?? 'GET',
        headers: init.headers ?? {},
        ...tls,
        servername: 'localhost',
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          const headers: string[] = [];
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            if (res.rawHeaders[i]!.toLowerCase() !== 'date') {
              headers.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
            }
          }
          resolve({
            status: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            headers,
            body,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/** The value of a header in a raw list (first instance, any spelling). */
export function rawHeader(headers: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === name) return headers[i + 1];
  }
  return undefined;
}
