// The embedded database has no authentication of its own, so the file system is its access
// control: a Unix socket only its user can open, and no file that tells anyone else where it is.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/database.js';
import { silentLogger } from '../src/logger.js';

const mode = (p: string) => fs.statSync(p).mode & 0o777;

describe('embedded database access', () => {
  const dataDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ob-embedded-')), 'data');
  let db: Database;

  beforeAll(async () => {
    db = await openDatabase(
      { url: undefined, dataDir, poolMax: 2, migrateOnStart: false },
      silentLogger(),
    );
  });
  afterAll(async () => {
    await db?.close();
    fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
  });

  const lock = () =>
    JSON.parse(fs.readFileSync(path.join(dataDir, 'ob-events.lock.json'), 'utf8')) as Record<
      string,
      unknown
    >;

  it('when it runs, then it answers over a Unix socket of mode 0600 in a 0700 directory and has no TCP port', async () => {
    expect((await db.knex.raw('select 1 as one')).rows).toEqual([{ one: 1 }]);
    const socketDir = lock().socketDir as string;
    expect(mode(socketDir)).toBe(0o700);
    const socket = path.join(socketDir, '.s.PGSQL.5432');
    expect(fs.statSync(socket).isSocket()).toBe(true);
    expect(mode(socket)).toBe(0o600);
    expect(lock()).not.toHaveProperty('port');
  });

  it('when it runs, then the lock file that names the socket is 0600 and DATA_DIR is 0700', () => {
    expect(mode(path.join(dataDir, 'ob-events.lock.json'))).toBe(0o600);
    expect(mode(dataDir)).toBe(0o700);
  });

  it('when it stops, then the socket directory is removed', async () => {
    const socketDir = lock().socketDir as string;
    await db.close();
    expect(fs.existsSync(socketDir)).toBe(false);
  });
});
