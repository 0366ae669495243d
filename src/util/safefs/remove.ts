/** removeTree(): a tree removed by descriptor, never across a symlink or a mount, only what was verified. */
import { lstatSync, unlinkSync } from 'node:fs';
import { lstat, readdir, rmdir } from 'node:fs/promises';
import { lstatEntry, unlinkEntry } from './calls.js';
import { at, atListed, openChild, type DirRef } from './dir.js';
import { infoFrom, type EntryInfo, type Identity } from './entry.js';
import { CrossDeviceError, errnoCode, TreeChangedError, UnverifiedEntriesError } from './errors.js';
import { displayPath, joinRel, relFromBuffer } from './names.js';
import { fanOut, forEachLimited, SYNC_CHUNK, WalkContext } from './context.js';
import { openListed } from './list.js';
import type { VerifiedSet } from './verified.js';

export interface RemoveOptions {
  signal?: AbortSignal;
  /**
   * Called (and awaited) as each directory is entered ('enter', before its contents are removed)
   * and each time it has been listed ('listed': its subdirectories lstat-ed, nothing listed yet
   * removed or entered).
   */
  onProgress?: (p: { removed: number; rel: string; phase: 'enter' | 'listed' }) => void | Promise<void>;
  /** Parallel unlinks and subtrees (default 32). */
  concurrency?: number;
  /** Times one directory is re-listed while its contents keep changing (default 20). */
  maxRounds?: number;
  /** lstat and unlink in the main thread (see WalkOptions.syncStat; default false). */
  syncStat?: boolean;
  /**
   * Remove only these entries (what a verification saw): anything else met is left where it is,
   * and the removal ends with an UnverifiedEntriesError naming it. Each directory is made root's
   * and 0700 (by descriptor) before it is listed, so that nobody can rename anything into or out
   * of it between the check of an entry and its removal; a directory left is given back its owner
   * and mode.
   */
  verified?: VerifiedSet;
}

/** Entries left that an UnverifiedEntriesError names (the rest are counted). */
const LEFT_NAMED = 100;

interface RemoveState {
  removed: number;
  readonly verified: VerifiedSet | undefined;
  readonly left: string[];
  leftCount: number;
}

/**
 * Removes the directory `name` in `parent` and everything below it, by descriptor: never follows a
 * symlink (a symlink is unlinked, its target untouched), never crosses to another filesystem or a
 * mount (CrossDeviceError, nothing across it removed), and opens each subdirectory only if it is
 * the inode its listing showed. A name that changes meanwhile is re-examined in the next round.
 * `expect` is the identity of the directory to remove (IdentityError otherwise).
 * Returns { removed: 0 } when `name` no longer exists.
 */
export async function removeTree(parent: DirRef, name: string, expect: Identity, opts?: RemoveOptions): Promise<{ removed: number }> {
  let top: DirRef;
  try {
    top = await openChild(parent, name, expect);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return { removed: 0 };
    throw error;
  }
  const ctx = new WalkContext(Math.max(1, Math.floor(opts?.concurrency ?? 32)), opts?.signal, false, opts?.syncStat ?? false);
  const state: RemoveState = { removed: 0, verified: opts?.verified, left: [], leftCount: 0 };
  const maxRounds = opts?.maxRounds ?? 20;
  try {
    const parentMount = await parent.mountId();
    const topMount = await top.mountId();
    if (top.dev !== parent.dev || (parentMount !== undefined && topMount !== undefined && parentMount !== topMount)) {
      throw new CrossDeviceError(name, top.path);
    }
    if (state.verified !== undefined && !state.verified.has({ type: 'dir', dev: top.dev, ino: top.ino })) leave(state, name);
    else await emptyDir(ctx, top, name, { dev: top.dev, mount: topMount }, state, opts?.onProgress, maxRounds);
  } catch (error) {
    ctx.fail(error);
  } finally {
    await top.close();
  }
  if (ctx.stopped) throw ctx.error;
  if (state.leftCount > 0) throw new UnverifiedEntriesError(state.left, state.leftCount);
  try {
    const now = await lstat(at(parent, name));
    if (now.dev === expect.dev && now.ino === expect.ino) {
      await rmdir(at(parent, name));
      state.removed++;
    }
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  return { removed: state.removed };
}

function leave(state: RemoveState, rel: string): void {
  if (state.left.length < LEFT_NAMED) state.left.push(rel);
  state.leftCount++;
}

/**
 * Makes a directory root's and 0700 (by descriptor); returns how to give it back its owner and mode
 * (those it had before an earlier, crashed removal locked it, when the verification knows them).
 */
async function lockDir(dir: DirRef, verified: VerifiedSet): Promise<() => Promise<void>> {
  const st = await dir.handle.stat();
  const before = verified.ownerBefore(st.ino) ?? { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
  await dir.handle.chown(process.geteuid?.() ?? 0, process.getegid?.() ?? 0);
  await dir.handle.chmod(0o700);
  return async () => {
    await dir.handle.chown(before.uid, before.gid);
    await dir.handle.chmod(before.mode);
  };
}

/**
 * Sorts one listing of `dir` into subdirectories to empty and other entries to unlink. Without a
 * verified set, the listing's types (d_type) do it and only directories need an lstat (for their
 * identity and device): anything else is unlinked by name, which never follows a symlink and cannot
 * remove a directory (if it became one meanwhile, the next round sees it). With one, every entry
 * is lstat-ed and an entry it does not hold is left (in `kept`) and reported.
 */
async function sortListing(
  ctx: WalkContext,
  dir: DirRef,
  rel: string,
  listing: readonly { name: Buffer; dir: boolean }[],
  state: RemoveState,
  kept: Set<string>,
): Promise<{ subdirs: EntryInfo[]; others: string[] }> {
  const subdirs: EntryInfo[] = [];
  const others: string[] = [];
  const verified = state.verified;
  await forEachLimited(ctx, verified ? listing : listing.filter((e) => e.dir), async (e) => {
    const name = relFromBuffer(e.name);
    try {
      const st = ctx.syncStat ? lstatSync(atListed(dir, name)) : await lstatEntry(atListed(dir, name));
      const info = infoFrom(st, joinRel(rel, name), name);
      if (info.type === 'dir' && info.dev !== dir.dev)
        subdirs.push(info); // refused just below
      else if (verified && !verified.has(info)) {
        kept.add(name);
        leave(state, info.rel);
      } else if (info.type === 'dir') subdirs.push(info);
      else if (verified) others.push(name);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
  });
  if (!verified) for (const e of listing) if (!e.dir) others.push(relFromBuffer(e.name));
  return { subdirs, others };
}

/** Empties `dir`; false when entries were left in it (see RemoveOptions.verified). */
async function emptyDir(
  ctx: WalkContext,
  dir: DirRef,
  rel: string,
  root: { dev: number; mount: number | undefined },
  state: RemoveState,
  onProgress: RemoveOptions['onProgress'],
  maxRounds: number,
): Promise<boolean> {
  if (onProgress) await onProgress({ removed: state.removed, rel, phase: 'enter' });
  const restore = state.verified ? await lockDir(dir, state.verified) : undefined;
  /** Names left in this directory: never removed, not listed again. */
  const kept = new Set<string>();
  let failed = false;
  try {
    for (let round = 0; ; round++) {
      if (ctx.stopped) return false;
      let listing: { name: Buffer; dir: boolean }[];
      try {
        listing = (await readdir(dir.self, { encoding: 'buffer', withFileTypes: true })).map((d) => ({
          name: d.name,
          dir: d.isDirectory(),
        }));
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') return true;
        throw error;
      }
      if (kept.size > 0) listing = listing.filter((e) => !kept.has(relFromBuffer(e.name)));
      if (listing.length === 0) return kept.size === 0;
      // Held until its entries are handled (any error ends the whole removal).
      const held = listing.length;
      ctx.held += held;
      if (round >= maxRounds)
        throw new TreeChangedError(rel, `${dir.path} keeps changing while being removed; gave up after ${maxRounds} rounds`);
      const { subdirs, others } = await sortListing(ctx, dir, rel, listing, state, kept);
      if (onProgress) await onProgress({ removed: state.removed, rel, phase: 'listed' });
      const crossing = subdirs.find((i) => i.dev !== root.dev);
      if (crossing) throw new CrossDeviceError(crossing.rel, `${dir.path}/${displayPath(crossing.name)}`);
      await unlinkAll(ctx, dir, rel, others, state);
      ctx.held -= held;
      if (ctx.stopped) return false;
      subdirs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      await fanOut(ctx, subdirs, async (info) => {
        let child: DirRef;
        try {
          child = await openListed(dir, info, root.mount);
        } catch (error) {
          if (error instanceof TreeChangedError) return; // replaced or gone: next round
          throw error;
        }
        let emptied: boolean;
        try {
          emptied = await emptyDir(ctx, child, info.rel, root, state, onProgress, maxRounds);
        } finally {
          await child.close();
        }
        if (ctx.stopped) return;
        if (!emptied) {
          kept.add(info.name);
          return;
        }
        try {
          await rmdir(atListed(dir, info.name));
          state.removed++;
        } catch (error) {
          // Gone, refilled, or replaced by a non-directory: the next round sees it.
          const code = errnoCode(error);
          if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
        }
      });
      if (ctx.stopped) return false;
    }
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    // A directory that stays (entries left in it, or the removal stopped) gets its owner and mode back.
    if (restore && (kept.size > 0 || failed || ctx.stopped)) await restore().catch(() => undefined);
  }
}

/** Unlinks `names` in `dir`, counting what went. */
async function unlinkAll(ctx: WalkContext, dir: DirRef, rel: string, names: readonly string[], state: RemoveState): Promise<void> {
  const unlinkOne = (name: string, error: unknown): void => {
    if (error === undefined) {
      state.removed++;
      return;
    }
    const code = errnoCode(error);
    // A mount point (a file bind-mounted here): refused, nothing across it removed.
    if (code === 'EBUSY') throw new CrossDeviceError(joinRel(rel, name), `${dir.path}/${displayPath(name)}`);
    // Gone, or now a directory (EISDIR, or EPERM on some systems): the next round sees it.
    if (code !== 'ENOENT' && code !== 'EISDIR' && code !== 'EPERM') throw error;
  };
  if (ctx.syncStat) {
    for (const [i, name] of names.entries()) {
      if (i > 0 && i % SYNC_CHUNK === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      let failure: unknown;
      try {
        unlinkSync(atListed(dir, name));
      } catch (error) {
        failure = error;
      }
      unlinkOne(name, failure);
    }
    return;
  }
  await forEachLimited(ctx, names, async (name) => {
    let failure: unknown;
    try {
      await unlinkEntry(atListed(dir, name));
    } catch (error) {
      failure = error;
    }
    unlinkOne(name, failure);
  });
}
