// Which addresses the server may dial for a TPP (callback URLs): src/net/addressPolicy.ts.
import { describe, expect, it } from 'vitest';
import {
  AddressRefusedError,
  checkAddress,
  classify,
  HostUnresolvableError,
  resolveAndCheck,
  type LookupAll,
} from '../src/net/addressPolicy.js';

const table: [string, ReturnType<typeof classify>][] = [
  ['93.184.215.14', 'public'],
  ['2606:4700:4700::1111', 'public'],
  ['127.0.0.1', 'loopback'],
  ['127.9.9.9', 'loopback'],
  ['::1', 'loopback'],
  ['10.1.2.3', 'private'],
  ['172.16.0.1', 'private'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'private'],
  ['fd12:3456::1', 'private'],
  ['fec0::1', 'private'],
  ['169.254.1.1', 'linkLocal'],
  ['fe80::1', 'linkLocal'],
  ['fe80::1%eth0', 'linkLocal'],
  ['169.254.169.254', 'metadata'],
  ['169.254.170.2', 'metadata'],
  ['100.100.100.200', 'metadata'],
  ['168.63.129.16', 'metadata'],
  ['fd00:ec2::254', 'metadata'],
  ['224.0.0.1', 'multicast'],
  ['ff02::1', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['0.0.0.0', 'unspecified'],
  ['::', 'unspecified'],
  ['192.0.2.1', 'reserved'],
  ['240.0.0.1', 'reserved'],
  ['2001:db8::1', 'reserved'],
  ['64:ff9b::7f00:1', 'reserved'],
  ['::7f00:1', 'reserved'], // deprecated IPv4-compatible ::127.0.0.1
  ['::127.0.0.1', 'loopback'], // ipaddr.js reads a dotted tail as IPv4-mapped
  ['not an address', 'reserved'],
  // IPv4-mapped IPv6 is judged as the IPv4 address inside it.
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:10.0.0.1', 'private'],
  ['::ffff:169.254.169.254', 'metadata'],
  ['::ffff:93.184.215.14', 'public'],
];

describe('address policy', () => {
  it.each(table)('when the address is %s, then it is classified %s', (ip, category) => {
    expect(classify(ip)).toBe(category);
  });

  it('when private networks are not allowed, then only public addresses pass', () => {
    expect(checkAddress('93.184.215.14', { allowPrivate: false }).ok).toBe(true);
    for (const ip of ['127.0.0.1', '10.0.0.1', '::1', 'fd12::1', '100.64.1.1']) {
      expect(checkAddress(ip, { allowPrivate: false }).ok).toBe(false);
    }
  });

  it('when private networks are allowed, then loopback and private pass but link-local, metadata and the rest never do', () => {
    for (const ip of ['127.0.0.1', '10.0.0.1', '::1', 'fd12::1']) {
      expect(checkAddress(ip, { allowPrivate: true }).ok).toBe(true);
    }
    for (const ip of [
      '169.254.169.254',
      '169.254.1.1',
      'fe80::1',
      'fd00:ec2::254',
      '100.100.100.200',
      '224.0.0.1',
      '0.0.0.0',
      '192.0.2.1',
    ]) {
      expect(checkAddress(ip, { allowPrivate: true }).ok, ip).toBe(false);
    }
  });

  it('when a host name resolves to a public and a private address, then the host is refused', async () => {
    const lookup: LookupAll = () =>
      Promise.resolve([
        { address: '93.184.215.14', family: 4 },
        { address: '10.0.0.7', family: 4 },
      ]);
    await expect(
      resolveAndCheck('tpp.example', { allowPrivate: false, lookup }),
    ).rejects.toMatchObject({
      name: 'AddressRefusedError',
      address: '10.0.0.7',
      category: 'private',
    });
  });

  it('when a host name resolves to public addresses only, then they are returned', async () => {
    const lookup: LookupAll = () => Promise.resolve([{ address: '93.184.215.14', family: 4 }]);
    await expect(resolveAndCheck('tpp.example', { allowPrivate: false, lookup })).resolves.toEqual([
      '93.184.215.14',
    ]);
  });

  it('when the host is an IP literal, then it is checked without DNS', async () => {
    const lookup: LookupAll = () => Promise.reject(new Error('DNS must not be asked'));
    await expect(resolveAndCheck('[::1]', { allowPrivate: false, lookup })).rejects.toBeInstanceOf(
      AddressRefusedError,
    );
    await expect(resolveAndCheck('8.8.8.8', { allowPrivate: false, lookup })).resolves.toEqual([
      '8.8.8.8',
    ]);
  });

  it('when the host does not resolve, then HostUnresolvableError says so', async () => {
    const lookup: LookupAll = () =>
      Promise.reject(Object.assign(new Error('nope'), { code: 'ENOTFOUND' }));
    await expect(
      resolveAndCheck('nowhere.invalid', { allowPrivate: true, lookup }),
    ).rejects.toBeInstanceOf(HostUnresolvableError);
  });

  it('when DNS does not answer in time, then the lookup gives up', async () => {
    const lookup: LookupAll = () => new Promise(() => {});
    await expect(
      resolveAndCheck('slow.example', { allowPrivate: true, lookup, timeoutMs: 20 }),
    ).rejects.toThrow(/timed out/);
  });

  it('when the system resolver resolves localhost, then it is loopback and refused without the private allowance', async () => {
    await expect(resolveAndCheck('localhost', { allowPrivate: false })).rejects.toMatchObject({
      category: 'loopback',
    });
    await expect(resolveAndCheck('localhost', { allowPrivate: true })).resolves.not.toHaveLength(0);
  });
});
