/** One directory of a walk: listed and lstat-ed through its descriptor, its subdirectories opened checked. */
import { lstatSync, readlinkSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { lstatEntry } from './calls.js';
import { atListed, listNames, openChild, type DirRef } from './dir.js';
import { infoFrom, type EntryInfo } from './entry.js';
import { CrossDeviceError, errnoCode, NotADirectoryError, TreeChangedError } from './errors.js';
import { displayPath, joinRel, relFromBuffer } from './names.js';
import { forEachLimited, SYNC_CHUNK, type WalkContext } from './context.js';

/**
 * Lists `dir` (rel `rel`): every entry lstat-ed through the descriptor, in byte order of names.
 * A name that vanishes between readdir and lstat is a TreeChangedError, or skipped with `tolerateVanished`.
 */
export async function listDir(ctx: WalkContext, dir: DirRef, rel: string, rootDev: number, tolerateVanished = false): Promise<EntryInfo[]> {
  let names: string[];
  try {
    names = await listNames(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new TreeChangedError(rel, `${dir.path} vanished while being read`);
    throw error;
  }
  const infos: (EntryInfo | undefined)[] = new Array<EntryInfo | undefined>(names.length);
  const vanished = (name: string, error: unknown): void => {
    const code = errnoCode(error);
    // EINVAL: readlink of something that stopped being a symlink.
    if (code !== 'ENOENT' && code !== 'EINVAL') throw error;
    if (!tolerateVanished) throw new TreeChangedError(joinRel(rel, name), `${dir.path}/${displayPath(name)} changed while being read`);
  };
  const finish = (info: EntryInfo): EntryInfo => {
    if (info.dev !== rootDev) info.crossDevice = true;
    return info;
  };
  if (ctx.syncStat) {
    for (let i = 0; i < names.length; i++) {
      // Let the event loop run between chunks of a large directory.
      if (i > 0 && i % SYNC_CHUNK === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const name = names[i]!;
      const path = atListed(dir, name);
      try {
        const info = infoFrom(lstatSync(path), joinRel(rel, name), name);
        if (ctx.readTargets && info.type === 'symlink') info.target = relFromBuffer(readlinkSync(path, { encoding: 'buffer' }));
        infos[i] = finish(info);
      } catch (error) {
        vanished(name, error);
      }
    }
  } else {
    await forEachLimited(ctx, names, async (name, i) => {
      const path = atListed(dir, name);
      try {
        const info = infoFrom(await lstatEntry(path), joinRel(rel, name), name);
        if (ctx.readTargets && info.type === 'symlink') info.target = relFromBuffer(await readlink(path, { encoding: 'buffer' }));
        infos[i] = finish(info);
      } catch (error) {
        vanished(name, error);
      }
    });
  }
  // A dataset's snapshot directory (snapdir=visible) is ZFS's, not the tree's: never walked.
  return infos.filter((i): i is EntryInfo => i !== undefined && !(rel === '' && isZfsControlDir(i)));
}

/** ZFSCTL_INO_ROOT: the inode number OpenZFS gives a dataset's `.zfs` directory (no object has it). */
const ZFS_CTLDIR_INO = 0xffffffffffff;

/** Whether a top-level entry is a ZFS dataset's `.zfs` control directory (not a user's `.zfs`). */
export function isZfsControlDir(info: Pick<EntryInfo, 'name' | 'type' | 'ino'>): boolean {
  return info.name === '.zfs' && info.type === 'dir' && info.ino === ZFS_CTLDIR_INO;
}

/** Opens a subdirectory found in a listing: same inode, same mount, or an error. */
export async function openListed(parent: DirRef, info: EntryInfo, rootMount: number | undefined): Promise<DirRef> {
  let child: DirRef;
  try {
    child = await openChild(parent, info.name, { dev: info.dev, ino: info.ino });
  } catch (error) {
    if (error instanceof TreeChangedError) throw error;
    if (error instanceof NotADirectoryError || errnoCode(error) === 'ENOENT') {
      throw new TreeChangedError(info.rel, `${parent.path}/${displayPath(info.name)} changed while being walked`);
    }
    throw error;
  }
  const mount = await child.mountId();
  if (rootMount !== undefined && mount !== undefined && mount !== rootMount) {
    await child.close();
    throw new CrossDeviceError(info.rel, child.path);
  }
  return child;
}
