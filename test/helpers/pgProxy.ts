// A TCP proxy in front of the test Postgres, so that a test can take the database away from a
// server (every connection cut, new ones refused) and give it back, while the test itself
// keeps its direct connection. A real outage as the server sees it, without stopping Postgres.
import net from 'node:net';

export interface PgProxy {
  /** The database URL through the proxy. */
  url: string;
  /** Cuts every connection and refuses new ones until up(). */
  down(): void;
  up(): void;
  close(): Promise<void>;
}

export async function startPgProxy(databaseUrl: string): Promise<PgProxy> {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  let available = true;
  const server = net.createServer((client) => {
    if (!available) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    down() {
      available = false;
      for (const s of sockets) s.destroy();
    },
    up() {
      available = true;
    },
    close: async () => {
      available = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
