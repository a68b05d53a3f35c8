// `ob-events keys list|rotate`.
import { printJson, withServices } from '../context.js';

export async function keysList(): Promise<void> {
  await withServices(async ({ keys }) => {
    await keys.ensureActiveKey();
    printJson(await keys.list());
  });
}

export async function keysRotate(): Promise<void> {
  await withServices(async ({ keys }) => printJson(await keys.rotate()));
}
