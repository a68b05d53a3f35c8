// The embedded database for `npm start` with no DATABASE_URL: PGlite (Postgres compiled to WASM)
// in this process, served over the Postgres wire protocol by pglite-socket on a Unix socket.
// Everything else then talks to it through the same `pg` driver and SQL as a real server, so
// there is one code path. What differs, and why:
// - PGlite is one backend: the socket server queues statements and runs one transaction at a
//   time. `FOR UPDATE SKIP LOCKED` is valid SQL there and trivially correct (nothing is ever
//   locked by anyone else), and code must not wait inside a transaction on another connection.
// - NOTIFY: the single backend emits notifications into whichever connection committed, so we
//   read NotificationResponse frames from every reply and hand them to the in-process notifier.
// - Another process (a CLI command while `serve` runs) must not open the same directory; the
//   owner writes a lock file with its socket directory, and other processes connect there.
// - PGlite has no authentication, so access is the file system's: the socket lives in a private
//   directory (0700) and is itself 0600, the lock file is 0600 and DATA_DIR is 0700, so only the
//   user running ob-events can reach or read the database. There is no TCP port.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../logger.js';

const LOCK_FILE = 'ob-events.lock.json';
/** The file name libpq and `pg` look for in the socket directory (default port 5432). */
const SOCKET_NAME = '.s.PGSQL.5432';
const PRIVATE_FILE = 0o600;
const PRIVATE_DIR = 0o700;

export interface EmbeddedServer {
  connectionString: string;
  /** True when this process owns the PGlite instance; false when it uses another process's. */
  owner: boolean;
  /** NOTIFY payloads seen by the owner: emits (channel, payload). Empty when not the owner. */
  notifications: EventEmitter;
  close(): Promise<void>;
}

interface LockContent {
  pid: number;
  /** The owner's socket directory; empty while the owner is still starting. */
  socketDir: string;
}

// Opens within this process share one owner (tests start a server and inspect its database; a
// process must never open the same directory twice).
const openInThisProcess = new Map<string, { refs: number; server: Promise<EmbeddedServer> }>();

export async function openEmbedded(dataDir: string, logger: Logger): Promise<EmbeddedServer> {
  const key = path.resolve(dataDir);
  let entry = openInThisProcess.get(key);
  if (!entry) {
    entry = { refs: 0, server: openExclusive(key, logger) };
    openInThisProcess.set(key, entry);
    entry.server.catch(() => openInThisProcess.delete(key));
  }
  entry.refs += 1;
  const shared = await entry.server;
  const current = entry;
  let closed = false;
  return {
    ...shared,
    close: async () => {
      if (closed) return;
      closed = true;
      current.refs -= 1;
      if (current.refs === 0) {
        openInThisProcess.delete(key);
        await shared.close();
      }
    },
  };
}

async function openExclusive(dataDir: string, logger: Logger): Promise<EmbeddedServer> {
  fs.mkdirSync(dataDir, { recursive: true, mode: PRIVATE_DIR });
  fs.chmodSync(dataDir, PRIVATE_DIR); // the database files: the owner's alone
  const lockPath = path.join(dataDir, LOCK_FILE);
  const deadline = Date.now() + 30_000;

  while (Date.now() < deadline) {
    const existing = readLock(lockPath);
    if (existing === 'unreadable') {
      await sleep(100); // being written by its owner right now
      continue;
    }
    if (existing && existing.pid !== process.pid && isAlive(existing.pid)) {
      if (existing.socketDir === '') {
        await sleep(100); // its owner is still starting PGlite
        continue;
      }
      logger.debug(
        { pid: existing.pid, socketDir: existing.socketDir },
        'using the embedded database of a running ob-events',
      );
      return {
        connectionString: connectionStringFor(existing.socketDir),
        owner: false,
        notifications: new EventEmitter(),
        close: async () => {},
      };
    }
    if (existing) fs.rmSync(lockPath, { force: true }); // stale: its process is gone
    let fd: number;
    try {
      fd = fs.openSync(lockPath, 'wx', PRIVATE_FILE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue; // another process won the race
      throw err;
    }
    try {
      fs.writeSync(fd, JSON.stringify({ pid: process.pid, socketDir: '' } satisfies LockContent));
      fs.closeSync(fd);
      const server = await startOwner(dataDir, logger);
      writeLockAtomically(lockPath, { pid: process.pid, socketDir: server.socketDir });
      return {
        connectionString: connectionStringFor(server.socketDir),
        owner: true,
        notifications: server.notifications,
        close: async () => {
          await server.stop();
          const lock = readLock(lockPath);
          if (lock !== 'unreadable' && lock?.pid === process.pid)
            fs.rmSync(lockPath, { force: true });
        },
      };
    } catch (err) {
      fs.rmSync(lockPath, { force: true });
      throw err;
    }
  }
  throw new Error(`timed out waiting for the embedded database lock ${lockPath}`);
}

async function startOwner(dataDir: string, logger: Logger) {
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const started = Date.now();
  const db = await PGlite.create(path.join(dataDir, 'pgdata'));
  const notifications = new EventEmitter();
  notifications.setMaxListeners(0);
  captureNotifications(db, notifications, logger);
  // mkdtemp creates the directory 0700; the socket in it is made 0600 before anyone is told of it.
  const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-pg-'));
  const socketPath = path.join(socketDir, SOCKET_NAME);
  const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections: 200 });
  try {
    await server.start();
    fs.chmodSync(socketPath, PRIVATE_FILE);
  } catch (err) {
    await server.stop().catch(() => {});
    await db.close().catch(() => {});
    fs.rmSync(socketDir, { recursive: true, force: true });
    throw err;
  }
  logger.debug({ ms: Date.now() - started, socketDir }, 'embedded PGlite started');
  return {
    socketDir,
    notifications,
    stop: async () => {
      await server.stop();
      await db.close();
      fs.rmSync(socketDir, { recursive: true, force: true });
    },
  };
}

type RawStream = (
  message: Uint8Array,
  options: { onRawData: (data: Uint8Array) => void; syncToFs?: boolean },
) => Promise<void>;

/**
 * Wraps PGlite's raw protocol entry point (the one pglite-socket uses) to find
 * NotificationResponse ('A') frames in each reply: int32 length, int32 pid, channel\0, payload\0.
 */
function captureNotifications(db: object, out: EventEmitter, logger: Logger): void {
  const target = db as { execProtocolRawStream: RawStream };
  const original = target.execProtocolRawStream.bind(db);
  target.execProtocolRawStream = async (message, options) => {
    const chunks: Buffer[] = [];
    await original(message, {
      ...options,
      onRawData: (data) => {
        chunks.push(Buffer.from(data));
        options.onRawData(data);
      },
    });
    if (chunks.length === 0) return;
    const reply = Buffer.concat(chunks);
    for (let off = 0; off + 5 <= reply.length;) {
      const type = reply[off];
      const len = reply.readInt32BE(off + 1);
      if (len < 4 || off + 1 + len > reply.length) break;
      if (type === 0x41) {
        const [channel, payload] = reply
          .subarray(off + 9, off + 1 + len)
          .toString('utf8')
          .split('\0');
        if (channel !== undefined) {
          try {
            out.emit('notification', channel, payload ?? '');
          } catch (err) {
            logger.error({ err }, 'notification handler failed');
          }
        }
      }
      off += 1 + len;
    }
  };
}

function connectionStringFor(socketDir: string): string {
  return `postgres://postgres@localhost/postgres?host=${encodeURIComponent(socketDir)}`;
}

function readLock(lockPath: string): LockContent | 'unreadable' | undefined {
  let text: string;
  try {
    text = fs.readFileSync(lockPath, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = JSON.parse(text) as Partial<LockContent>;
    if (typeof parsed.pid === 'number' && typeof parsed.socketDir === 'string') {
      return { pid: parsed.pid, socketDir: parsed.socketDir };
    }
  } catch {
    // fall through
  }
  // Half-written by a live owner, or left corrupt by a dead one: stale after a few seconds.
  const stat = fs.statSync(lockPath, { throwIfNoEntry: false });
  if (!stat) return undefined;
  return Date.now() - stat.mtimeMs > 5_000 ? { pid: -1, socketDir: '' } : 'unreadable';
}

function writeLockAtomically(lockPath: string, content: LockContent): void {
  const tmp = `${lockPath}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(content), { mode: PRIVATE_FILE });
  fs.chmodSync(tmp, PRIVATE_FILE);
  fs.renameSync(tmp, lockPath);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * True when `dataDir` holds an embedded database (initialised by `serve` or `migrate`), or its
 * owner is starting one right now. CLI commands refuse to create one (src/cli/context.ts).
 */
export function embeddedDatabaseExists(dataDir: string): boolean {
  if (fs.existsSync(path.join(dataDir, 'pgdata', 'PG_VERSION'))) return true;
  const lock = readLock(path.join(dataDir, LOCK_FILE));
  return lock === 'unreadable' || (lock !== undefined && isAlive(lock.pid));
}
