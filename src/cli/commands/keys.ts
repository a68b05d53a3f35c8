// `ob-events keys list|rotate`. A rotation is audited (actor: the OS user).
import os from 'node:os';
import { printJson, withServices } from '../context.js';

export async function keysList(): Promise<void> {
  await withServices(async ({ keys }) => {
    await keys.ensureActiveKey();
    printJson(await keys.list());
  });
}

export async function keysRotate(): Promise<void> {
  await withServices(async ({ operations }) =>
    printJson(await operations.rotateKeys({ via: 'cli', name: os.userInfo().username })),
  );
}
