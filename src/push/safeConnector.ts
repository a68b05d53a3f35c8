// The TLS connector of every push connection. The callback's host was checked when the TPP
// registered it, but DNS can answer differently later (rebinding), so the address is checked
// again here, on the address actually dialled: a host name goes through a lookup that refuses
// any answer the address policy refuses (src/net/addressPolicy.ts); an IP literal is checked
// before dialling. A refusal fails the connection like any connection error (the attempt is
// recorded and retried), it never reaches the network.
import dns from 'node:dns';
import net from 'node:net';
import { buildConnector } from 'undici';
import { AddressRefusedError, checkAddress, describeCategory } from '../net/addressPolicy.js';

export interface SafeConnectorOptions {
  /** CALLBACK_ALLOW_PRIVATE_NETWORKS. */
  allowPrivate: boolean;
  /** Trusted CAs for TPP servers (PUSH_CA_FILE); undefined: Node's default CAs. */
  ca?: string | Buffer | undefined;
  /** Optional client certificate for TPPs that want mTLS. */
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  /** Connection (TCP + TLS handshake) time-out. */
  timeoutMs: number;
  /** DNS lookup (tests inject one); default dns.lookup. */
  lookup?: typeof dns.lookup | undefined;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;

/** A net `lookup` that resolves every address and refuses the host if any one is refused. */
export function checkedLookup(
  allowPrivate: boolean,
  lookup: typeof dns.lookup = dns.lookup,
): net.LookupFunction {
  return ((hostname: string, options: dns.LookupOptions, callback: LookupCallback) => {
    lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, []);
        return;
      }
      const list = addresses as dns.LookupAddress[];
      for (const a of list) {
        const verdict = checkAddress(a.address, { allowPrivate });
        if (!verdict.ok) {
          callback(
            new AddressRefusedError(
              a.address,
              verdict.category,
              `${hostname} resolves to ${a.address}, ${describeCategory(verdict.category)}`,
            ) as NodeJS.ErrnoException,
            [],
          );
          return;
        }
      }
      if (options.all) callback(null, list);
      else if (list[0]) callback(null, list[0].address, list[0].family);
      else
        callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), []);
    });
  }) as unknown as net.LookupFunction;
}

export function safeConnector(opts: SafeConnectorOptions): buildConnector.connector {
  const connect = buildConnector({
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    ...(opts.cert !== undefined && opts.key !== undefined
      ? { cert: opts.cert, key: opts.key }
      : {}),
    minVersion: 'TLSv1.2',
    rejectUnauthorized: true,
    timeout: opts.timeoutMs,
    lookup: checkedLookup(opts.allowPrivate, opts.lookup),
  });
  return (options, callback) => {
    if (options.protocol !== 'https:') {
      callback(new Error(`refusing ${options.protocol} callback: push is HTTPS only`), null);
      return;
    }
    const host = options.hostname.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(host)) {
      // An IP literal is dialled without a lookup: check it here.
      const verdict = checkAddress(host, { allowPrivate: opts.allowPrivate });
      if (!verdict.ok) {
        callback(new AddressRefusedError(host, verdict.category, verdict.reason), null);
        return;
      }
    }
    connect(options, callback);
  };
}
