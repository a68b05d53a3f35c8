// Which IP addresses the server may connect to on a TPP's behalf (callback URLs): a defence
// against server-side request forgery. A TPP-supplied host must not lead us to our own machine,
// our private network, or a cloud metadata service.
//
// - public: allowed.
// - loopback, private (RFC 1918, CGNAT 100.64/10, IPv6 ULA fc00::/7 and old site-local): allowed
//   only with CALLBACK_ALLOW_PRIVATE_NETWORKS=true (tests, local demos).
// - link-local, metadata, multicast, broadcast, unspecified, reserved (documentation, benchmarking,
//   240/4, IPv6 translation prefixes that embed an IPv4 address): never.
// IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it carries.
//
// Used when a subscription is written (`resolveAndCheck`) and again by the push engine at connect
// time (`classify` / `assertPublicAddress` on the address actually dialled), so a DNS answer that
// changes after registration (rebinding) is still caught.
import { lookup as dnsLookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

export type AddressCategory =
  | 'public'
  | 'loopback'
  | 'private'
  | 'linkLocal'
  | 'metadata'
  | 'multicast'
  | 'broadcast'
  | 'unspecified'
  | 'reserved';

export interface AddressPolicyOptions {
  /** CALLBACK_ALLOW_PRIVATE_NETWORKS: loopback and private addresses become acceptable. */
  allowPrivate: boolean;
}

/** Cloud instance metadata and platform endpoints, refused whatever the configuration says. */
const METADATA_ADDRESSES = new Set(
  [
    '169.254.169.254', // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean instance metadata
    '169.254.169.253', // AWS VPC DNS
    '169.254.169.123', // AWS time sync
    '169.254.170.2', // AWS ECS task metadata
    '169.254.170.23', // AWS EKS pod identity
    '100.100.100.200', // Alibaba Cloud metadata
    '168.63.129.16', // Azure wire server (a public address that is not the internet)
    'fd00:ec2::254', // AWS IPv6 metadata
    'fd00:ec2::253', // AWS IPv6 DNS
    'fd00:ec2::123', // AWS IPv6 time sync
    'fd00:ec2::23', // AWS IPv6 EKS pod identity
  ].map((a) => ipaddr.parse(a).toNormalizedString()),
);

const IPV4_CATEGORY: Record<string, AddressCategory> = {
  unicast: 'public',
  loopback: 'loopback',
  private: 'private',
  carrierGradeNat: 'private',
  linkLocal: 'linkLocal',
  multicast: 'multicast',
  broadcast: 'broadcast',
  unspecified: 'unspecified',
};

const IPV6_CATEGORY: Record<string, AddressCategory> = {
  unicast: 'public',
  loopback: 'loopback',
  uniqueLocal: 'private',
  deprecatedSiteLocal: 'private',
  linkLocal: 'linkLocal',
  multicast: 'multicast',
  unspecified: 'unspecified',
};

/** The category of an IP address string; 'reserved' for anything that does not parse. */
export function classify(ip: string): AddressCategory {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(stripZone(ip));
  } catch {
    return 'reserved';
  }
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    addr = (addr as ipaddr.IPv6).toIPv4Address();
  }
  if (METADATA_ADDRESSES.has(addr.toNormalizedString())) return 'metadata';
  if (addr.kind() === 'ipv4') return IPV4_CATEGORY[addr.range()] ?? 'reserved';
  const v6 = addr as ipaddr.IPv6;
  // ::/96 (deprecated IPv4-compatible, e.g. ::127.0.0.1) is not a range ipaddr.js names.
  if (v6.range() === 'unicast' && v6.parts.slice(0, 6).every((p) => p === 0)) return 'reserved';
  return IPV6_CATEGORY[v6.range()] ?? 'reserved';
}

export type AddressVerdict =
  | { ok: true; category: AddressCategory }
  | { ok: false; category: AddressCategory; reason: string };

const DESCRIPTION: Record<AddressCategory, string> = {
  public: 'a public address',
  loopback: 'a loopback address',
  private: 'a private-network address',
  linkLocal: 'a link-local address',
  metadata: 'a cloud metadata address',
  multicast: 'a multicast address',
  broadcast: 'the broadcast address',
  unspecified: 'the unspecified address',
  reserved: 'a reserved or non-routable address',
};

export function checkAddress(ip: string, opts: AddressPolicyOptions): AddressVerdict {
  const category = classify(ip);
  if (category === 'public') return { ok: true, category };
  if (opts.allowPrivate && (category === 'loopback' || category === 'private')) {
    return { ok: true, category };
  }
  return { ok: false, category, reason: `${ip} is ${DESCRIPTION[category]}` };
}

/** "a loopback address", "a cloud metadata address", … */
export function describeCategory(category: AddressCategory): string {
  return DESCRIPTION[category];
}

export class AddressRefusedError extends Error {
  constructor(
    readonly address: string,
    readonly category: AddressCategory,
    message: string,
  ) {
    super(message);
    this.name = 'AddressRefusedError';
  }
}

/** Throws AddressRefusedError unless the policy allows connecting to `ip`. */
export function assertPublicAddress(ip: string, opts: AddressPolicyOptions): void {
  const verdict = checkAddress(ip, opts);
  if (!verdict.ok) throw new AddressRefusedError(ip, verdict.category, verdict.reason);
}

export type LookupAll = (host: string) => Promise<{ address: string; family: number }[]>;

export interface ResolveOptions extends AddressPolicyOptions {
  /** DNS lookup returning every address (tests inject one); default dns.promises.lookup. */
  lookup?: LookupAll;
  /** Give up on DNS after this long (default 5 s). */
  timeoutMs?: number;
}

export class HostUnresolvableError extends Error {
  constructor(
    readonly host: string,
    reason: string,
  ) {
    super(`${host} does not resolve (${reason})`);
    this.name = 'HostUnresolvableError';
  }
}

const defaultLookup: LookupAll = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Resolves a host name (or takes an IP literal as is) and checks every address it resolves to:
 * one refused address refuses the host, since a connection may use any of them. Returns the
 * addresses. Throws HostUnresolvableError or AddressRefusedError.
 */
export async function resolveAndCheck(host: string, opts: ResolveOptions): Promise<string[]> {
  const literal = stripBrackets(host);
  if (ipaddr.isValid(stripZone(literal))) {
    assertPublicAddress(literal, opts);
    return [literal];
  }
  const addresses = await withTimeout(
    (opts.lookup ?? defaultLookup)(host),
    opts.timeoutMs ?? 5_000,
    host,
  );
  if (addresses.length === 0) throw new HostUnresolvableError(host, 'no addresses');
  for (const { address } of addresses) assertPublicAddress(address, opts);
  return addresses.map((a) => a.address);
}

async function withTimeout<T>(p: Promise<T>, ms: number, host: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HostUnresolvableError(host, 'DNS timed out')), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (err) {
    if (err instanceof HostUnresolvableError) throw err;
    throw new HostUnresolvableError(host, (err as { code?: string }).code ?? 'lookup failed');
  } finally {
    clearTimeout(timer);
  }
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** fe80::1%eth0: the zone does not change the category. */
function stripZone(ip: string): string {
  const i = ip.indexOf('%');
  return i === -1 ? ip : ip.slice(0, i);
}
