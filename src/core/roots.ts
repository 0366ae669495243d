/**
 * Whether a root can be worked on now, and by whom.
 *
 * A root that is gone (its rootdir missing, its filesystem not there or not mounted) is a
 * RootGoneError: nothing of it is touched, its jobs wait in the journal, and the other roots go
 * on. The first run that meets it notes it in `<stateDir>/roots-gone/` (what `status` and
 * `doctor` show, and what lets `recover` fail once and not at every run after); the note goes
 * when the root is back.
 *
 * A root is served by one stateDir: the holding directory (root's alone) records it in `owner`
 * the first time. Another stateDir meeting that record is refused (RootClaimedError): two
 * instances would adopt each other's staging datasets. An administrator who moved the stateDir
 * removes that file (docs/operating.md).
 */
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { RootClaimedError, RootGoneError, quoteName } from './errors.js';
import { isErrno, writeFileAtomic } from './fsutil.js';
import { holdingDir } from './places.js';
import { openDir } from '../util/safefs/index.js';

/** Throws RootGoneError unless `rootdir` is a directory. */
export async function assertRootPresent(rootdir: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(rootdir);
  } catch (error) {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) throw new RootGoneError(`${quoteName(rootdir)} does not exist`);
    throw error;
  }
  if (!stats.isDirectory()) throw new RootGoneError(`${quoteName(rootdir)} is not a directory`);
}

// ---------------------------------------------------------------------------------------------
// Gone roots, noted in the stateDir

export interface GoneNote {
  readonly rootdir: string;
  readonly rootfs: string;
  /** Why, in one line (the RootGoneError's message). */
  readonly reason: string;
  /** When a run first met it gone. */
  readonly since: string;
}

const GONE_DIR = 'roots-gone';

function goneFile(stateDir: string, rootdir: string): string {
  return join(stateDir, GONE_DIR, `${createHash('sha256').update(rootdir).digest('hex').slice(0, 20)}.json`);
}

/** Notes that the root is gone; true when it was not noted yet (this run is the first to meet it). */
export async function noteGone(stateDir: string, note: Omit<GoneNote, 'since'>): Promise<boolean> {
  const file = goneFile(stateDir, note.rootdir);
  const old = await readNote(file);
  if (old?.reason === note.reason && old.rootfs === note.rootfs) return false;
  await mkdir(join(stateDir, GONE_DIR), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, `${JSON.stringify({ ...note, since: old?.since ?? new Date().toISOString() })}\n`, 0o600);
  return old === undefined;
}

/** The root is back: forget its note. */
export async function clearGone(stateDir: string, rootdir: string): Promise<void> {
  await unlink(goneFile(stateDir, rootdir)).catch((error: unknown) => {
    if (!isErrno(error, 'ENOENT')) throw error;
  });
}

/** Whether a run already met this root gone. */
export async function goneNoted(stateDir: string, rootdir: string): Promise<boolean> {
  return (await readNote(goneFile(stateDir, rootdir))) !== undefined;
}

/** Every gone root noted in the stateDir. */
export async function goneRoots(stateDir: string): Promise<GoneNote[]> {
  const names = await readdir(join(stateDir, GONE_DIR)).catch(() => [] as string[]);
  const notes = await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => readNote(join(stateDir, GONE_DIR, n))));
  return notes.filter((n): n is GoneNote => n !== undefined).sort((a, b) => (a.rootdir < b.rootdir ? -1 : 1));
}

async function readNote(file: string): Promise<GoneNote | undefined> {
  try {
    const value = JSON.parse(await readFile(file, 'utf8')) as GoneNote;
    return typeof value.rootdir === 'string' && typeof value.reason === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The one line that reports a gone root: what is missing, that its jobs wait untouched, and
 * what brings them back.
 */
export function goneLine(rootdir: string, reason: string, jobs: number): string {
  const waiting = jobs > 0 ? `its ${jobs} interrupted job(s) wait in the journal, untouched, ` : 'nothing of it is touched ';
  return `root ${quoteName(rootdir)} is gone (${reason}); ${waiting}until it is back (import or mount it, then run 'zfs-dynamic-creator recover')`;
}

// ---------------------------------------------------------------------------------------------
// Which stateDir serves a root

/** The file in the holding directory that names the stateDir serving the root (not a job's helper). */
export const ROOT_CLAIM_FILE = 'owner';
const OWNER = ROOT_CLAIM_FILE;

export interface RootClaim {
  readonly stateDir: string;
  readonly host: string;
}

function canonical(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** The claim recorded in the root's holding directory, if any (the directory must be ours; ensureHoldingDir checked it). */
export async function readRootClaim(rootdir: string): Promise<RootClaim | undefined> {
  const dir = await openDir(holdingDir(rootdir)).catch(() => undefined);
  if (dir === undefined) return undefined;
  try {
    if ((await dir.info()).uid !== (process.getuid?.() ?? 0)) return undefined;
    const value = JSON.parse(await readFile(dir.at(OWNER), 'utf8')) as RootClaim;
    return typeof value.stateDir === 'string' ? { stateDir: value.stateDir, host: String(value.host) } : undefined;
  } catch {
    return undefined;
  } finally {
    await dir.close();
  }
}

/** The line that refuses a root another stateDir serves. */
export function claimedLine(rootdir: string, claim: RootClaim, stateDir: string): string {
  return (
    `root ${quoteName(rootdir)} is served by another instance: its holding directory records stateDir ${quoteName(claim.stateDir)} (host ${claim.host}), ` +
    `this run uses ${quoteName(canonical(stateDir))}; two instances would adopt each other's jobs, so it is left alone. ` +
    `Run with that instance's config (or ZFS_DYNAMIC_CREATOR_STATE_DIR); if the stateDir really moved, remove ${quoteName(`${holdingDir(rootdir)}/${OWNER}`)} and run again`
  );
}

/**
 * Records that `stateDir` serves the root (the first time), or refuses a root another stateDir
 * serves. A dry run records nothing. One read of a small file per process and root.
 */
export async function claimRoot(rootdir: string, stateDir: string, dryRun: boolean): Promise<void> {
  const mine: RootClaim = { stateDir: canonical(stateDir), host: hostname() };
  const claim = await readRootClaim(rootdir);
  if (claim !== undefined && claim.stateDir !== mine.stateDir) throw new RootClaimedError(claimedLine(rootdir, claim, stateDir));
  if (dryRun || (claim !== undefined && claim.host === mine.host)) return;
  // The holding directory by descriptor: nothing written through a path a user could redirect.
  const dir = await openDir(holdingDir(rootdir));
  try {
    await writeFileAtomic(dir.at(OWNER).toString('latin1'), `${JSON.stringify(mine)}\n`, 0o600);
  } finally {
    await dir.close();
  }
}
