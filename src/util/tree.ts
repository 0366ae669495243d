/** Tree fingerprints: a cheap way to tell whether anything under a directory changed. */
import { createHash } from 'node:crypto';
import { lstat, opendir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { isErrno } from '../core/index.js';

/** A cheap fingerprint of a tree: changes when anything in it is added, removed or modified. */
export async function treeFingerprint(root: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    let s: Stats;
    try {
      s = await lstat(`${root}${rel}`);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) {
        hash.update(`${rel}\0gone\n`);
        return;
      }
      throw error;
    }
    hash.update(`${rel}\0${s.mode}\0${s.size}\0${s.mtimeMs}\0${s.ctimeMs}\0${s.ino}\n`);
    if (!s.isDirectory()) return;
    const names: string[] = [];
    try {
      for await (const entry of await opendir(`${root}${rel}`)) names.push(entry.name);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
    for (const name of names.sort()) await walk(`${rel}/${name}`);
  };
  await walk('');
  return hash.digest('hex');
}
