/** Owner, mode and times set through an O_PATH descriptor; the compare of a compare-and-copy. */
import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { chmod, chown, lstat, open, utimes, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { at, O_PATH, type DirRef } from './dir.js';
import { typeOf, type EntryInfo, type EntryType, type Identity } from './entry.js';
import { DestinationChangedError, errnoCode, TreeChangedError } from './errors.js';
import { displayPath } from './names.js';

export function tempName(): string {
  return `.zfs-dynamic-creator.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
}

/** Opens `name` in `dir` with O_PATH|O_NOFOLLOW: a handle on exactly that inode, whatever it is. */
export async function openPath(dir: DirRef, name: string): Promise<FileHandle> {
  return open(at(dir, name), O_PATH | constants.O_NOFOLLOW);
}

/** Sets owner, then mode (not for symlinks), then times of an O_PATH handle's inode. */
export async function applyMetadata(handle: FileHandle, type: EntryType, info: EntryInfo): Promise<void> {
  const self = `/proc/self/fd/${handle.fd}`;
  await chown(self, info.uid, info.gid);
  if (type !== 'symlink') await chmod(self, info.mode);
  await utimes(self, info.atimeExactMs / 1000, info.mtimeExactMs / 1000);
}

/**
 * Sets owner, mode and times of `name` in `dir` to info's, through an O_PATH descriptor (never
 * following a symlink; a symlink's own owner and times are set). The entry must be of info's type.
 * Returns the entry's identity.
 */
export async function setMetadata(dir: DirRef, name: string, info: EntryInfo): Promise<Identity> {
  const handle = await openPath(dir, name);
  try {
    const st = await handle.stat();
    const type = typeOf(st);
    if (type !== info.type) throw new TreeChangedError(info.rel, `${dir.path}/${displayPath(name)} is a ${type}, expected a ${info.type}`);
    await applyMetadata(handle, type, info);
    return { dev: st.dev, ino: st.ino };
  } finally {
    await handle.close();
  }
}

/** Throws DestinationChangedError unless `name` in `dir` is still `expected` (null: still absent). */
export async function checkReplaced(dir: DirRef, name: string, expected: EntryInfo | null | undefined, rel: string): Promise<void> {
  if (expected === undefined) return;
  let now: Stats | undefined;
  try {
    now = await lstat(at(dir, name));
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  const unchanged =
    expected === null
      ? now === undefined
      : now !== undefined &&
        now.dev === expected.dev &&
        now.ino === expected.ino &&
        typeOf(now) === expected.type &&
        now.ctimeMs === expected.ctimeExactMs &&
        now.mtimeMs === expected.mtimeExactMs &&
        now.size === expected.size;
  if (!unchanged)
    throw new DestinationChangedError(rel, `${dir.path}/${displayPath(name)} changed after the copy was decided; not replaced`);
}
