/** walkDirs(): a tree directory by directory, each open while the caller works in it. */
import type { DirRef } from './dir.js';
import type { EntryInfo } from './entry.js';
import { CrossDeviceError, TreeChangedError } from './errors.js';
import { contextOf, fanOut, type WalkOptions, type WalkResult } from './context.js';
import { listDir, openListed } from './list.js';

/**
 * What walkDirs does at each directory. `T` is the caller's state for a directory (for example
 * the matching directory of another tree), made by `enter` just before the walk descends.
 */
export interface DirVisitor<T> {
  /**
   * Called once per directory, with the directory open (`dir`, reached through its parent's
   * descriptor and checked to be the inode its listing showed) and listed (`entries`: lstat-ed
   * through the descriptor, byte order of names). Awaited before the directory is closed and
   * before its subdirectories are walked: whatever is opened below `dir` (e.g. `at(dir, name)`
   * with O_NOFOLLOW) must be opened while this runs.
   */
  dir(dir: DirRef, rel: string, entries: readonly EntryInfo[], state: T): Promise<void>;
  /** The state of subdirectory `child` (of a directory whose state is `parent`), or undefined to leave it out. */
  enter(child: EntryInfo, parent: T): Promise<T | undefined>;
  /** After a directory and everything below it (not called for the root's state). */
  leave?(state: T): Promise<void>;
  /**
   * A subdirectory left out because it is no longer what its listing showed (replaced, renamed,
   * a symlink now, gone) or is a mount point: `reason` says which. Without this callback such a
   * change is an error (TreeChangedError, CrossDeviceError), as in walk().
   */
  skipped?(child: EntryInfo, reason: Error): void;
}

/**
 * Walks the tree below `root` directory by directory, handing each open directory and its
 * listing to `visitor.dir`, with the same guarantees as walk(): nothing followed through a
 * symlink, each subdirectory opened through its parent's descriptor (O_DIRECTORY|O_NOFOLLOW) and
 * checked to be the inode its listing showed, other filesystems (crossDevice entries) listed but
 * never entered, a bind mount of the same filesystem never entered. With `visitor.skipped`,
 * names that vanish between the listing and their lstat are left out of the listing and changed
 * subdirectories are skipped; without it both are a TreeChangedError, as in walk(). Subtrees are
 * walked in parallel as walk() does (open descriptors bounded by depth x concurrency).
 */
export async function walkDirs<T>(root: DirRef, rootState: T, visitor: DirVisitor<T>, opts?: WalkOptions): Promise<WalkResult> {
  const ctx = contextOf(opts);
  const tolerant = visitor.skipped !== undefined;
  const rootMount = await root.mountId();
  const descendDirs = async (dir: DirRef, rel: string, state: T): Promise<void> => {
    if (ctx.stopped) return;
    const infos = await listDir(ctx, dir, rel, root.dev, tolerant);
    for (const info of infos) ctx.count(info);
    await visitor.dir(dir, rel, infos, state);
    const subdirs = infos.filter((i) => i.type === 'dir' && !i.crossDevice);
    await fanOut(ctx, subdirs, async (info) => {
      if (ctx.stopped) return;
      let child: DirRef;
      try {
        child = await openListed(dir, info, rootMount);
      } catch (error) {
        if (tolerant && (error instanceof TreeChangedError || error instanceof CrossDeviceError)) {
          visitor.skipped!(info, error);
          return;
        }
        throw error;
      }
      try {
        const childState = await visitor.enter(info, state);
        if (childState === undefined) return;
        try {
          await descendDirs(child, info.rel, childState);
        } finally {
          await visitor.leave?.(childState);
        }
      } finally {
        await child.close();
      }
    });
  };
  try {
    ctx.count(await root.info());
    await descendDirs(root, '', rootState);
  } catch (error) {
    ctx.fail(error);
  }
  if (ctx.stopped) throw ctx.error;
  return { entries: ctx.entries, bytes: ctx.bytes };
}
