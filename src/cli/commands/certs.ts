// `ob-events certs dev [--out DIR]`: writes the development PKI and reports where, as JSON.
import * as path from 'node:path';
import { writeDevPki } from '../../crypto/devPki.js';

export async function certsDev(opts: { out: string }): Promise<void> {
  const { dir, ...files } = await writeDevPki(path.resolve(process.cwd(), opts.out));
  // stdout carries only this one machine-readable line; logs go to stderr.
  process.stdout.write(JSON.stringify({ dir, files }) + '\n');
}
