/**
 * Helper places: where a job keeps things in its root while it runs (a staging mountpoint, the
 * original moved aside). They live in one holding directory, `<rootdir>/.zfs-dynamic-creator`,
 * owned by root and mode 0700, on the root's own filesystem (so moving the original there is one
 * atomic rename). Nobody but root can reach anything in it by path: a user who owns a directory
 * being converted cannot touch the moved-aside original, nor read a staging copy, through it.
 *
 * One naming rule for everyone, so that sweeps, watchers and filters never take helpers for new
 * work; every path is derived from the root and the directory's name, never read from elsewhere.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { RefusedError, quoteName } from './errors.js';
import { isErrno } from './fsutil.js';

/** The holding directory's name in every root. */
export const HOLDING_NAME = '.zfs-dynamic-creator';
/** Helper names of versions before the holding directory (`.zfs-dynamic-creator-<hash>.<kind>`). */
export const HELPER_PREFIX = '.zfs-dynamic-creator-';

export function holdingDir(rootdir: string): string {
  return `${rootdir}/${HOLDING_NAME}`;
}

function tag(name: string): string {
  return createHash('sha256').update(name).digest('hex').slice(0, 16);
}

/** `<rootdir>/.zfs-dynamic-creator/<hash of name>.<kind>`: short whatever the name's length. */
export function helperPath(rootdir: string, name: string, kind: string): string {
  return `${holdingDir(rootdir)}/${tag(name)}.${kind}`;
}

/**
 * Where versions before the holding directory kept a job's helpers: in the root itself,
 * `<rootdir>/.zfs-dynamic-creator-<hash>.<kind>` (for recovery of their jobs).
 */
export function rootLevelHelperPath(rootdir: string, name: string, kind: string): string {
  return `${rootdir}/${HELPER_PREFIX}${tag(name)}.${kind}`;
}

/** The helper places of one job. */
export interface JobPaths {
  /** The root-only holding directory. */
  readonly holding: string;
  /** Where the new filesystem is reachable before the swap. */
  readonly staging: string;
  /** Where the original directory is kept between the swap and its removal. */
  readonly aside: string;
}

export function jobPaths(rootdir: string, name: string): JobPaths {
  return { holding: holdingDir(rootdir), staging: helperPath(rootdir, name, 'staging'), aside: helperPath(rootdir, name, 'orig') };
}

export function isHelperName(name: string): boolean {
  return name === HOLDING_NAME || name.startsWith(HELPER_PREFIX);
}

/** An owner and a mode, as stat gives them. */
export interface OwnerMode {
  readonly uid: number;
  readonly mode: number;
}

/**
 * Why a root lets users rename entries they do not own, or undefined when it does not: the tool
 * protects what it makes there (the holding directory, the mountpoint at the original's path)
 * only by owning it in a root whose owner is root and which is either not writable by group and
 * others or sticky (then only an entry's owner can rename or remove it).
 */
export function rootModeProblem(rootdir: string, root: OwnerMode, uid: number): string | undefined {
  const mode = root.mode & 0o7777;
  if (root.uid !== uid) {
    return `the root ${quoteName(rootdir)} is owned by uid ${root.uid}, not ${uid}: its owner could rename what the tool makes in it; give it to root (chown ${uid} ${quoteName(rootdir)})`;
  }
  const writers = [mode & 0o020 ? 'group' : '', mode & 0o002 ? 'others' : ''].filter(Boolean).join(' and ');
  if (writers !== '' && (mode & 0o1000) === 0) {
    return `the root ${quoteName(rootdir)} is writable by ${writers} without the sticky bit (mode ${mode.toString(8).padStart(4, '0')}): they could rename what the tool makes in it; run chmod +t ${quoteName(rootdir)} (everyone who can make folders there still can), or chmod go-w`;
  }
  return undefined;
}

/** Refuses a root whose mode lets users rename what the tool makes in it (rootModeProblem). */
export async function assertRootMode(rootdir: string): Promise<void> {
  const problem = rootModeProblem(rootdir, await stat(rootdir), process.getuid?.() ?? 0);
  if (problem !== undefined) throw new RefusedError(problem);
}

const DIR_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** Opens `name` in the open directory `parent` (openat, O_NOFOLLOW), or undefined when it is absent. */
async function openIn(parent: FileHandle, name: string): Promise<FileHandle | undefined> {
  try {
    return await open(`/proc/self/fd/${parent.fd}/${name}`, DIR_NOFOLLOW);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    if (isErrno(error, 'ELOOP') || isErrno(error, 'ENOTDIR')) return undefined;
    throw error;
  }
}

/**
 * Makes sure the holding directory exists and is ours: a real directory (not a symlink), owned
 * by this process's user, with no access for group or others, in a root whose mode lets nobody
 * else rename it (rootModeProblem). It is made, opened and fixed through descriptors (mkdirat,
 * openat with O_NOFOLLOW, fstat, fchown, fchmod), never by path, so nothing swapped in for it
 * is ever changed. Anything else in its place (a user may create that name first in a
 * world-writable root) is refused, never used.
 */
export async function ensureHoldingDir(rootdir: string, create: boolean): Promise<void> {
  const path = holdingDir(rootdir);
  const uid = process.getuid?.() ?? 0;
  const root = await open(rootdir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const problem = rootModeProblem(rootdir, await root.stat(), uid);
    if (problem !== undefined) throw new RefusedError(problem);
    let dir = await openIn(root, HOLDING_NAME);
    if (dir === undefined && !(await present(root))) {
      if (!create) return;
      let made = true;
      await mkdir(`/proc/self/fd/${root.fd}/${HOLDING_NAME}`, { mode: 0o700 }).catch((error: unknown) => {
        if (!isErrno(error, 'EEXIST')) throw error;
        made = false;
      });
      dir = await openIn(root, HOLDING_NAME);
      const s = await dir?.stat();
      if (made && dir !== undefined && s?.uid === uid) {
        // mkdir honours the umask; a chown in a world-writable root also resets a planted group.
        await dir.chown(uid, process.getgid?.() ?? 0);
        await dir.chmod(0o700);
      }
    }
    try {
      const why = dir === undefined ? await whatIsThere(root) : holdingProblem(await dir.stat(), uid);
      if (why !== undefined) {
        throw new RefusedError(
          `${quoteName(path)}, the tool's holding directory, ${why}; somebody else made it: move it away and run again`,
        );
      }
    } finally {
      await dir?.close();
    }
  } finally {
    await root.close();
  }
}

async function present(root: FileHandle): Promise<boolean> {
  return lstat(`/proc/self/fd/${root.fd}/${HOLDING_NAME}`).then(
    () => true,
    (error: unknown) => {
      if (isErrno(error, 'ENOENT')) return false;
      throw error;
    },
  );
}

/** What is at the holding directory's name when it could not be opened as a directory. */
async function whatIsThere(root: FileHandle): Promise<string> {
  const s = await lstat(`/proc/self/fd/${root.fd}/${HOLDING_NAME}`).catch(() => undefined);
  return s === undefined ? 'could not be made' : s.isSymbolicLink() ? 'is a symbolic link' : 'is not a directory';
}

function holdingProblem(s: OwnerMode, uid: number): string | undefined {
  if (s.uid !== uid) return `is owned by uid ${s.uid}, not ${uid}`;
  if ((s.mode & 0o077) !== 0) return `has mode ${(s.mode & 0o7777).toString(8)}, not 700`;
  return undefined;
}
