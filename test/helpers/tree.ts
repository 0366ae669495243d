/** Building and describing directory trees for tests. */
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Makes `count` files with varied content under `dir`, in a few subdirectories. */
export async function makeTree(dir: string, count = 20, size = 1000): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const sub = join(dir, `d${i % 4}`);
    await mkdir(sub, { recursive: true });
    await writeFile(join(sub, `f${i}.dat`), Buffer.alloc(size + i, String.fromCharCode(97 + (i % 26))));
  }
}

export interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha?: string;
  target?: string;
  mtime?: number;
}

/** path -> entry, for every entry under `root` (not following symlinks). */
export async function describeTree(root: string, options: { mtimes?: boolean } = {}): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const walk = async (rel: string): Promise<void> => {
    const p = join(root, rel);
    const s = await lstat(p);
    const e: Entry = {
      type: s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'link' : s.isFile() ? 'file' : 'other',
      mode: s.mode & 0o7777,
      uid: s.uid,
      gid: s.gid,
    };
    if (s.isFile()) {
      e.size = s.size;
      e.sha = createHash('sha256')
        .update(await readFile(p))
        .digest('hex');
      if (options.mtimes) e.mtime = Math.floor(s.mtimeMs);
    }
    if (s.isSymbolicLink()) e.target = await readlink(p);
    out.set(rel || '.', e);
    if (s.isDirectory()) for (const name of (await readdir(p)).sort()) await walk(rel ? join(rel, name) : name);
  };
  await walk('');
  return out;
}
