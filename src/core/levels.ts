/**
 * Layout levels (issue 20). With runs at a depth N
 * below the root (Nanopore: experiment/sample/run), a run's name is the relative path `a/b/run`
 * and the directories above it stay plain directories of the root's filesystem. mount(2) and
 * every path-based call follow links in the levels, and the mountpoint checks (mountpoint.ts)
 * hold only where nobody else can rename or replace an entry: so each level must be a real
 * directory on the root's own filesystem (a move aside stays one rename), owned by root or an
 * owner the administrator trusts (layout.trustedOwners: the instrument's service account), and
 * not writable by group or others unless it is sticky and root's. Checked by descriptors
 * (openat with O_NOFOLLOW from the root), right before anything is mounted, as assertRootMode.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, type FileHandle } from 'node:fs/promises';
import { isZfsControlDir } from '../util/safefs/index.js';
import { RefusedError, quoteName } from './errors.js';
import { isErrno } from './fsutil.js';
import { isHelperName, type OwnerMode } from './places.js';
import type { Layout } from './types.js';

/** A level directory as fstat gives it. */
export interface LevelStat extends OwnerMode {
  readonly dev: number;
}

/**
 * Why the level directory `path` lets someone but root and the trusted owners rename or replace
 * what is in it, or leaves its root's filesystem; undefined when it does neither.
 */
export function levelProblem(
  path: string,
  level: LevelStat,
  rootDev: number,
  uid: number,
  trusted: ReadonlySet<number>,
): string | undefined {
  if (level.dev !== rootDev) return `${quoteName(path)} is another filesystem's mountpoint, not a plain directory of the root`;
  if (level.uid !== uid && !trusted.has(level.uid))
    return `${quoteName(path)} is owned by uid ${level.uid}, neither root nor a trusted owner (layout.trustedOwners): its owner could replace what is in it`;
  const mode = level.mode & 0o7777;
  const writers = [mode & 0o020 ? 'group' : '', mode & 0o002 ? 'others' : ''].filter(Boolean).join(' and ');
  if (writers !== '' && !((mode & 0o1000) !== 0 && level.uid === uid))
    return `${quoteName(path)} is writable by ${writers} (mode ${mode.toString(8).padStart(4, '0')}) and not sticky and root's: they could rename what is in it`;
  return undefined;
}

/**
 * The components of a run's name at `depth` (`a/b/run` at depth 3), or undefined when it is not
 * one: exactly `depth` components, none empty, `.` or `..`, no NUL.
 */
export function runComponents(name: string, depth: number): string[] | undefined {
  const parts = name.split('/');
  if (parts.length !== depth) return undefined;
  return parts.every((p) => p !== '' && p !== '.' && p !== '..' && !p.includes('\0')) ? parts : undefined;
}

const DIR_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** Refuses a run whose levels (every component but the last) fail levelProblem; a level that is a link or gone is refused too. */
export async function assertLevels(rootdir: string, name: string, depth: number, trusted: ReadonlySet<number>): Promise<void> {
  const parts = runComponents(name, depth);
  if (parts === undefined) throw new RefusedError(`${quoteName(name)} is not a run at depth ${depth} of ${quoteName(rootdir)}`);
  const uid = process.getuid?.() ?? 0;
  const opened: FileHandle[] = [await open(rootdir, constants.O_RDONLY | constants.O_DIRECTORY)];
  try {
    const rootDev = (await opened[0]!.stat()).dev;
    let path = rootdir;
    for (const part of parts.slice(0, -1)) {
      path = `${path}/${part}`;
      const parent = opened.at(-1)!;
      const level = await open(`/proc/self/fd/${parent.fd}/${part}`, DIR_NOFOLLOW).catch((error: unknown) => {
        if (isErrno(error, 'ELOOP') || isErrno(error, 'ENOTDIR') || isErrno(error, 'ENOENT')) return undefined;
        throw error;
      });
      if (level === undefined)
        throw new RefusedError(`${quoteName(path)} is a symbolic link, not a directory, or gone; the run is left as it is`);
      opened.push(level);
      const problem = levelProblem(path, await level.stat(), rootDev, uid, trusted);
      if (problem !== undefined) throw new RefusedError(`${problem}; the run is left as it is`);
    }
  } finally {
    for (const handle of opened) await handle.close();
  }
}

/**
 * Why `name` is not a run of the layout, or undefined: `depth` components (runComponents), each
 * matching its level's pattern.
 */
export function layoutProblem(name: string, layout: Layout): string | undefined {
  const parts = runComponents(name, layout.depth);
  if (parts === undefined) return `it is not a path of ${layout.depth} directory names (the root's layout.depth)`;
  const bad = layout.levels?.findIndex((source, i) => !new RegExp(source, 'u').test(parts[i]!)) ?? -1;
  return bad >= 0 ? `${quoteName(parts[bad]!)} does not match layout.levels[${bad}] (${layout.levels![bad]})` : undefined;
}

/** What a walk of a root's levels found: the runs (relative paths), what does not fit the layout, names that are not UTF-8. */
export interface LevelWalk {
  readonly runs: string[];
  readonly ignored: string[];
  /** Directories that do not match their level's pattern, or levels that are not plain directories of the root. */
  readonly unfit: string[];
  readonly unreadable: string[];
}

async function lstatOrNone(path: string): Promise<Stats | undefined> {
  return lstat(path).catch((error: unknown) => {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return undefined;
    throw error;
  });
}

/**
 * The directories at the layout's depth, level by level (names only, then one lstat each): a
 * level that is not a real directory of the root's filesystem is passed over, a name that does
 * not match its level's pattern is listed as ignored, the root's helpers and .zfs too.
 */
export async function walkLevels(rootdir: string, layout: Layout): Promise<LevelWalk> {
  const patterns = layout.levels?.map((source) => new RegExp(source, 'u'));
  const found: LevelWalk = { runs: [], ignored: [], unfit: [], unreadable: [] };
  const rootDev = (await lstat(rootdir)).dev;
  let level = [''];
  for (let depth = 0; depth < layout.depth; depth++) {
    const next: string[] = [];
    for (const rel of level) {
      const dir = rel === '' ? rootdir : `${rootdir}/${rel}`;
      const names = await readdir(dir, { encoding: 'buffer' }).catch((error: unknown) => {
        if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return [] as Buffer[];
        throw error;
      });
      for (const raw of names) {
        const name = raw.toString('utf8');
        const path = rel === '' ? name : `${rel}/${name}`;
        if (!Buffer.from(name, 'utf8').equals(raw)) {
          found.unreadable.push(path);
          continue;
        }
        const stats = await lstatOrNone(`${rootdir}/${path}`);
        if (!stats?.isDirectory()) continue;
        const last = depth === layout.depth - 1;
        const helper = depth === 0 && (isHelperName(name) || isZfsControlDir({ name, type: 'dir', ino: stats.ino }));
        if (helper) found.ignored.push(path);
        else if ((!last && stats.dev !== rootDev) || patterns?.[depth]?.test(name) === false) found.unfit.push(path);
        else (last ? found.runs : next).push(path);
      }
    }
    level = next;
  }
  return found;
}
