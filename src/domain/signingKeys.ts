// The server's signing keys as the rest of the code sees them: the active key (SETs, access
// tokens, response signatures), the published set (/jwks), rotation and retirement.
// Each replica caches the active key for a few seconds and drops the cache when any replica
// announces a change, so after `keys rotate` every replica signs with the new key within 10 s.
import type { KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import {
  SIGNING_ALG,
  generateSigningKey,
  isSealed,
  loadSigningKeyFile,
  openPrivateKey,
  privateKeyFromJwk,
  publicKeyFromJwk,
  sealPrivateKey,
} from '../crypto/signingKeys.js';
import { CHANNELS, notify, type Notifier } from '../db/notifier.js';
import type { SigningKeysStore, StoredSigningKey } from '../db/stores/signingKeysStore.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Knex } from 'knex';

const CACHE_MS = 5_000;

export interface ActiveKey {
  kid: string;
  alg: typeof SIGNING_ALG;
  privateKey: KeyObject;
  /** PKCS#8 PEM, for handing the key to signing worker threads. */
  privatePem: string;
}

export interface KeyInfo {
  kid: string;
  alg: string;
  status: string;
  source: string;
  encrypted: boolean;
  createdAt: string;
  activatedAt: string | null;
  retiringSince: string | null;
  retireAfter: string | null;
}

export interface KeyRingDeps {
  store: SigningKeysStore;
  knex: Knex;
  config: Config['keys'];
  clock: Clock;
  logger: Logger;
}

export class KeyRing {
  private active: { key: ActiveKey; until: number } | undefined;
  private published: { keys: StoredSigningKey[]; until: number } | undefined;
  private fileKey: Promise<{ publicJwk: JWK; privateKey: KeyObject }> | undefined;

  constructor(private readonly deps: KeyRingDeps) {}

  async watch(notifier: Notifier): Promise<void> {
    await notifier.listen(CHANNELS.config, (payload) => {
      if (payload === 'keys') this.invalidate();
    });
    notifier.onResync(() => this.invalidate());
  }

  invalidate(): void {
    this.active = undefined;
    this.published = undefined;
  }

  /**
   * Makes sure there is an active key: the SIGNING_KEY_FILE key when configured (activated if it
   * is new), else the existing active key, else a newly generated one.
   */
  async ensureActiveKey(): Promise<void> {
    const { keyFile, keyFileKid } = this.deps.config;
    if (keyFile && keyFileKid) {
      const current = await this.deps.store.active();
      if (current?.kid === keyFileKid) return;
      const { publicJwk } = await this.loadFileKey();
      await this.activate({ kid: keyFileKid, publicJwk, privateKey: null, source: 'file' });
      this.deps.logger.info({ kid: keyFileKid }, 'signing key from SIGNING_KEY_FILE is now active');
      return;
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.deps.store.active()) return;
      const created = await this.createGenerated();
      if (created) return;
    }
    throw new Error('could not create the first signing key');
  }

  /**
   * With KEY_ENCRYPTION_KEY set, seals every private key still stored in plaintext (written
   * before the KEK was configured) and says so; returns the kids sealed. Runs at start-up.
   */
  async sealPlaintextKeys(): Promise<string[]> {
    const kek = this.deps.config.encryptionKey;
    if (!kek) return [];
    const sealed: string[] = [];
    for (const key of await this.deps.store.list()) {
      if (key.privateKey === null || isSealed(key.privateKey)) continue;
      const jwk = JSON.parse(key.privateKey) as JWK;
      const replacement = sealPrivateKey(jwk, key.kid, kek);
      if (await this.deps.store.replacePrivateKey(key.kid, key.privateKey, replacement)) {
        sealed.push(key.kid);
      }
    }
    if (sealed.length > 0) {
      this.deps.logger.warn(
        { kids: sealed },
        `sealed ${sealed.length} plaintext signing key(s) with KEY_ENCRYPTION_KEY`,
      );
      this.invalidate();
    }
    return sealed;
  }

  async activeKey(): Promise<ActiveKey> {
    const now = this.deps.clock.now();
    if (this.active && this.active.until > now) return this.active.key;
    let stored = await this.deps.store.active();
    if (!stored) {
      await this.ensureActiveKey();
      stored = await this.deps.store.active();
      if (!stored) throw new Error('no active signing key');
    }
    const privateKey = await this.privateKeyOf(stored);
    const key: ActiveKey = {
      kid: stored.kid,
      alg: SIGNING_ALG,
      privateKey,
      privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    };
    this.active = { key, until: now + CACHE_MS };
    return key;
  }

  /** Public JWK Set: the active key and the retiring ones still in their overlap. */
  async publicJwks(): Promise<{ keys: JWK[] }> {
    return { keys: (await this.publishedKeys()).map((k) => k.publicJwk) };
  }

  /** Public key for a kid we publish (verifying our own access tokens). */
  async verificationKey(kid: string): Promise<KeyObject | undefined> {
    const key = (await this.publishedKeys()).find((k) => k.kid === kid);
    return key ? publicKeyFromJwk(key.publicJwk) : undefined;
  }

  async rotate(): Promise<KeyInfo> {
    if (this.deps.config.keyFile) {
      throw new AppError(
        'conflict',
        'signing keys come from SIGNING_KEY_FILE: rotate by deploying a new file and SIGNING_KEY_KID',
      );
    }
    const created = await this.createGenerated();
    if (!created)
      throw new Error('another process changed the active key at the same time; try again');
    const stored = await this.deps.store.find(created);
    return info(stored!);
  }

  async list(): Promise<KeyInfo[]> {
    return (await this.deps.store.list()).map(info);
  }

  /** Retires keys past their overlap that no pending SET needs any more. */
  async retireExpired(): Promise<string[]> {
    const retired = await this.deps.store.retireExpired(new Date(this.deps.clock.now()));
    if (retired.length > 0) {
      await notify(this.deps.knex, CHANNELS.config, 'keys');
      this.invalidate();
    }
    return retired;
  }

  private async publishedKeys(): Promise<StoredSigningKey[]> {
    const now = this.deps.clock.now();
    if (this.published && this.published.until > now) return this.published.keys;
    const keys = await this.deps.store.published();
    this.published = { keys, until: now + CACHE_MS };
    return keys;
  }

  private async createGenerated(): Promise<string | undefined> {
    const generated = await generateSigningKey();
    if (!this.deps.config.encryptionKey) {
      this.deps.logger.warn(
        { kid: generated.kid },
        'storing a signing key UNENCRYPTED: set KEY_ENCRYPTION_KEY',
      );
    }
    const ok = await this.activate({
      kid: generated.kid,
      publicJwk: generated.publicJwk,
      privateKey: sealPrivateKey(
        generated.privateJwk,
        generated.kid,
        this.deps.config.encryptionKey,
      ),
      source: 'generated',
    });
    return ok ? generated.kid : undefined;
  }

  private async activate(key: Parameters<SigningKeysStore['activate']>[0]): Promise<boolean> {
    const retireAfter = new Date(this.deps.clock.now() + this.deps.config.overlapDays * 86_400_000);
    const ok = await this.deps.store.activate(key, retireAfter);
    if (ok) {
      await notify(this.deps.knex, CHANNELS.config, 'keys');
      this.invalidate();
    }
    return ok;
  }

  private async privateKeyOf(stored: StoredSigningKey): Promise<KeyObject> {
    if (stored.source === 'file') {
      if (this.deps.config.keyFileKid !== stored.kid) {
        throw new Error(
          `the active signing key ${stored.kid} is loaded from a file on each replica: set SIGNING_KEY_FILE and SIGNING_KEY_KID=${stored.kid} here too`,
        );
      }
      return (await this.loadFileKey()).privateKey;
    }
    return privateKeyFromJwk(
      openPrivateKey(stored.privateKey!, stored.kid, this.deps.config.encryptionKey),
    );
  }

  private loadFileKey() {
    const { keyFile, keyFileKid } = this.deps.config;
    this.fileKey ??= loadSigningKeyFile(keyFile!, keyFileKid!);
    return this.fileKey;
  }
}

function info(k: StoredSigningKey): KeyInfo {
  return {
    kid: k.kid,
    alg: k.alg,
    status: k.status,
    source: k.source,
    encrypted: k.privateKey !== null && isSealed(k.privateKey),
    createdAt: k.createdAt.toISOString(),
    activatedAt: k.activatedAt?.toISOString() ?? null,
    retiringSince: k.retiringSince?.toISOString() ?? null,
    retireAfter: k.retireAfter?.toISOString() ?? null,
  };
}
