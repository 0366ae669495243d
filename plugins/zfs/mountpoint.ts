/**
 * The mountpoint at the original's path. mount(2) follows symbolic links, and `zfs` resolves the
 * path a moment after the tool looked at it, so the dataset is mounted only at a directory that
 * nobody else can replace or fill: made by root (mkdir, right after the original is moved aside;
 * EEXIST means someone made something there), owned by root, writable by nobody else, empty, in
 * a root where nobody else can rename or remove a root-owned entry (assertRootMode: root-owned,
 * and sticky or not writable by group and others). Checked again (the same inode) right before
 * the mount.
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rmdir } from 'node:fs/promises';
import { assertRootMode, isErrno, type Identity } from '../../src/index.js';

/** What a directory looks like, for mountpointProblem. */
export interface PlaceState {
  readonly uid: number;
  readonly mode: number;
  readonly entries: number;
}

export interface MountpointProblem {
  /** 'not-empty': something was written there (nothing is mounted over it); 'foreign': anything else. */
  readonly kind: 'not-empty' | 'foreign';
  readonly why: string;
}

export type Mountpoint = { readonly identity: Identity } | { readonly problem: MountpointProblem };

/** Why a directory is no place to mount at, or undefined. */
export function mountpointProblem(s: PlaceState, uid: number): MountpointProblem | undefined {
  if (s.entries > 0) return { kind: 'not-empty', why: 'it is not empty' };
  if (s.uid !== uid) return { kind: 'foreign', why: `it is owned by uid ${s.uid}, not ${uid}` };
  if ((s.mode & 0o022) !== 0) return { kind: 'foreign', why: `it is writable by others (mode ${(s.mode & 0o7777).toString(8)})` };
  return undefined;
}

const DIR_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const ownUid = (): number => process.getuid?.() ?? 0;

/** The directory at `path` (opened without following a link), or undefined when it is something else; 'absent'. */
async function inspect(path: string): Promise<{ identity: Identity; state: PlaceState } | undefined | 'absent'> {
  let handle;
  try {
    handle = await open(path, DIR_NOFOLLOW);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return (await lstat(path).catch(() => undefined)) === undefined ? 'absent' : undefined;
    if (isErrno(error, 'ELOOP') || isErrno(error, 'ENOTDIR')) return undefined;
    throw error;
  }
  try {
    const s = await handle.stat();
    const entries = (await readdir(`/proc/self/fd/${handle.fd}`)).length;
    return { identity: { dev: s.dev, ino: s.ino }, state: { uid: s.uid, mode: s.mode, entries } };
  } finally {
    await handle.close();
  }
}

/** Whether `path` is a mountpoint the tool may use (or remove: root's and empty), and its identity. */
export async function checkPlace(path: string): Promise<Mountpoint | 'absent'> {
  const found = await inspect(path);
  if (found === 'absent') return found;
  if (found === undefined) return { problem: { kind: 'foreign', why: 'it is a symbolic link or not a directory' } };
  const problem = mountpointProblem(found.state, ownUid());
  return problem !== undefined ? { problem } : { identity: found.identity };
}

/** Makes the mountpoint (root's, 0700), or takes one made before that passes the same checks. */
export async function makeMountpoint(rootdir: string, path: string): Promise<Mountpoint> {
  await assertRootMode(rootdir);
  await mkdir(path, { mode: 0o700 }).catch((error: unknown) => {
    if (!isErrno(error, 'EEXIST')) throw error;
  });
  const place = await checkPlace(path);
  return place === 'absent' ? { problem: { kind: 'foreign', why: 'it was removed as it was made' } } : place;
}

/** Right before the mount: still the directory made, root's, empty, in a root nobody else can rename in. */
export async function checkMountpoint(rootdir: string, path: string, identity: Identity): Promise<MountpointProblem | undefined> {
  await assertRootMode(rootdir);
  const place = await checkPlace(path);
  if (place === 'absent') return { kind: 'foreign', why: 'it is gone' };
  if ('problem' in place) return place.problem;
  if (place.identity.dev !== identity.dev || place.identity.ino !== identity.ino)
    return { kind: 'foreign', why: 'it is not the directory the tool made' };
  return undefined;
}

/** Removes the tool's own empty mountpoint at `path` (before the commit, to put the original back); false when something else is there. */
export async function removeOwnMountpoint(path: string): Promise<boolean> {
  const place = await checkPlace(path);
  if (place === 'absent') return true;
  if ('problem' in place) return false;
  await rmdir(path);
  return true;
}
