/** copyEntry() and ensureDir(): single entries copied between trees without following a symlink on either side. */
import { lstat, mkdir, readlink, rename, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { copyXattrs } from '../xattr.js';
import { at, openChild, reopen, type DirRef } from './dir.js';
import { typeOf, type EntryInfo } from './entry.js';
import { DestinationChangedError, errnoCode, TreeChangedError, UnsupportedEntryError } from './errors.js';
import { checkName, displayPath, joinRel, splitRel } from './names.js';
import { applyMetadata, checkReplaced, openPath, tempName } from './metadata.js';
import { copyFileEntry } from './file.js';

export interface CopyOptions {
  /** Called with the bytes copied so far for regular files (after the copy). */
  onBytes?: (bytes: number) => void;
  /**
   * Compare-and-copy: the destination entry as it was when the copy was decided (null: there was
   * none). Right before the destination is replaced (or made, or its metadata set) it is lstat-ed
   * again; anything else there now is a DestinationChangedError, and nothing is replaced.
   */
  replaces?: EntryInfo | null;
}

/**
 * Copies one entry from `src` (name `srcName`, described by `info` from a walk of src) to `dst`
 * as `dstName`, never reading through a symlink in src nor writing through one in dst:
 *
 * - file: opened O_NOFOLLOW and checked against info's dev/ino (TreeChangedError otherwise); copied
 *   (copy_file_range through fs.copyFile, block cloning where the filesystem does it) into a new
 *   temporary name made with O_CREAT|O_EXCL|O_NOFOLLOW, owned by info's owner before any byte is
 *   written, then mode and times set and renamed over `dstName`.
 * - dir: made if missing (an existing directory gets metadata only). Set its metadata again after
 *   filling it (setMetadata), since adding entries changes its times.
 * - symlink: made under a temporary name, owner and times set, renamed over `dstName`.
 * - fifo, socket, devices: UnsupportedEntryError (the caller decides).
 *
 * Files and directories get the source's extended attributes and POSIX ACLs too (util/xattr.ts).
 */
export async function copyEntry(
  src: DirRef,
  srcName: string,
  dst: DirRef,
  dstName: string,
  info: EntryInfo,
  opts?: CopyOptions,
): Promise<{ bytes: number }> {
  checkName(dstName);
  switch (info.type) {
    case 'file':
      return copyFileEntry(src, srcName, dst, dstName, info, opts);
    case 'dir': {
      await checkReplaced(dst, dstName, opts?.replaces, info.rel);
      const made = await copyDirEntry(dst, dstName, info, opts?.replaces);
      try {
        await copyDirXattrs(src, srcName, made, info);
      } finally {
        await made.close();
      }
      return { bytes: 0 };
    }
    case 'symlink':
      await copySymlinkEntry(src, srcName, dst, dstName, info, opts?.replaces);
      return { bytes: 0 };
    default:
      throw new UnsupportedEntryError(info.rel, info.type);
  }
}

/**
 * Makes (or updates) directory `dstName` with info's metadata, through one O_PATH descriptor that
 * is returned (the caller closes it). The descriptor must be what was judged: the directory just
 * made (root's, 0700), or with `replaces` the entry judged (its device and inode); with
 * `replaces` null it must be new. So nothing renamed in meanwhile gets info's owner or ACLs.
 */
async function copyDirEntry(dst: DirRef, dstName: string, info: EntryInfo, replaces?: EntryInfo | null): Promise<FileHandle> {
  let made = true;
  try {
    await mkdir(at(dst, dstName), 0o700);
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw error;
    if (replaces === null)
      throw new DestinationChangedError(info.rel, `${dst.path}/${displayPath(dstName)} was made by someone else meanwhile; left as it is`);
    made = false;
  }
  const handle = await openPath(dst, dstName);
  try {
    const st = await handle.stat();
    if (!st.isDirectory())
      throw new TreeChangedError(info.rel, `${dst.path}/${displayPath(dstName)} exists and is a ${typeOf(st)}, not a directory`);
    const ours = st.uid === (process.geteuid?.() ?? 0) && (st.mode & 0o7777) === 0o700;
    const judged = replaces ? st.dev === replaces.dev && st.ino === replaces.ino : replaces === undefined;
    if (made ? !ours : !judged)
      throw new DestinationChangedError(info.rel, `${dst.path}/${displayPath(dstName)} was replaced meanwhile; left as it is`);
    await applyMetadata(handle, 'dir', info);
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** The extended attributes of directory `srcName` (checked to be info's) onto the directory open as `to`. */
async function copyDirXattrs(src: DirRef, srcName: string, to: FileHandle, info: EntryInfo): Promise<void> {
  const from = await openPath(src, srcName);
  try {
    const a = await from.stat();
    if (!a.isDirectory() || a.dev !== info.dev || a.ino !== info.ino) {
      throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} changed while being copied`);
    }
    await copyXattrs(from.fd, to.fd);
  } finally {
    await from.close();
  }
}

async function copySymlinkEntry(
  src: DirRef,
  srcName: string,
  dst: DirRef,
  dstName: string,
  info: EntryInfo,
  replaces?: EntryInfo | null,
): Promise<void> {
  let target: Buffer;
  try {
    const st = await lstat(at(src, srcName));
    if (!st.isSymbolicLink() || st.dev !== info.dev || st.ino !== info.ino) throw new Error('changed');
    target = await readlink(at(src, srcName), { encoding: 'buffer' });
  } catch {
    throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} is no longer the symlink that was listed`);
  }
  const tmp = tempName();
  await symlink(target, at(dst, tmp));
  let renamed = false;
  try {
    const handle = await openPath(dst, tmp);
    try {
      const st = await handle.stat();
      if (!st.isSymbolicLink()) throw new TreeChangedError(info.rel, `${dst.path}/${tmp} was replaced while being made`);
      await applyMetadata(handle, 'symlink', info);
    } finally {
      await handle.close();
    }
    await checkReplaced(dst, dstName, replaces, info.rel);
    await rename(at(dst, tmp), at(dst, dstName));
    renamed = true;
  } finally {
    if (!renamed) await unlink(at(dst, tmp)).catch(() => undefined);
  }
}

/**
 * Opens (or makes) each component of `rel` below `root`, with O_NOFOLLOW, and returns the last
 * one (the caller closes it). A missing component is made only when `metaOf(relOfComponent)`
 * gives its metadata (owner, mode, times are then set); otherwise the ENOENT is thrown.
 */
export async function ensureDir(root: DirRef, rel: string, metaOf?: (rel: string) => EntryInfo | undefined): Promise<DirRef> {
  let current = root;
  let sofar = '';
  try {
    for (const name of splitRel(rel)) {
      sofar = joinRel(sofar, name);
      let next: DirRef;
      try {
        next = await openChild(current, name);
      } catch (error) {
        const meta = errnoCode(error) === 'ENOENT' ? metaOf?.(sofar) : undefined;
        if (meta === undefined) throw error;
        if (meta.type !== 'dir') throw new TypeError(`metadata for ${displayPath(sofar)} is not a directory's`);
        await (await copyDirEntry(current, name, meta, null)).close();
        next = await openChild(current, name);
      }
      if (current !== root) await current.close();
      current = next;
    }
    if (current === root) return await reopen(root);
    return current;
  } catch (error) {
    if (current !== root) await current.close();
    throw error;
  }
}
