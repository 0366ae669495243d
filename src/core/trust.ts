/**
 * Trusted places. Running as root, the tool executes its config file (a .js
 * config is code) and its plugin modules, and keeps its journal in the
 * stateDir; all of them must be out of reach of every other user.
 *
 * The rule is the usual "secure path" one (OpenSSH's StrictModes, sudo's
 * sudoers checks): after resolving symbolic links, the file itself and every
 * directory above it up to / must be owned by root (or, when the tool runs as
 * another user, by that user) and not writable by group or others. A directory
 * writable by others is accepted only when it is sticky and owned by a trusted
 * user (/tmp): there nobody can rename or remove an entry they do not own, and
 * the entry below it is checked in turn. A symbolic link met on the way must itself be owned by
 * root (or that user): one another user planted in a sticky directory could lead to any place
 * that passes. Once a path passes, no other user can change what it leads to, so loading it right
 * after the check is safe.
 *
 * The checks call the file system synchronously: they are a few metadata calls on local,
 * root-owned paths, made while the program starts, when nothing else runs. Through the thread
 * pool each would cost a round trip of the event loop, one after another (a run that only
 * rejects a name checked about 40 paths that way). The functions stay async for their callers.
 */
import { lstatSync as lstat, mkdirSync as mkdir, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError, quoteName } from './errors.js';

const GROUP_WRITE = 0o020;
const OTHER_WRITE = 0o002;
const STICKY = 0o1000;

/** The owners whose files and directories are trusted: root, and the user the tool runs as. */
export function trustedOwners(): readonly number[] {
  const uid = typeof process.geteuid === 'function' ? process.geteuid() : 0;
  return uid === 0 ? [0] : [0, uid];
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

function writers(mode: number): string | undefined {
  const group = (mode & GROUP_WRITE) !== 0;
  const other = (mode & OTHER_WRITE) !== 0;
  if (group && other) return 'group and others';
  if (group) return 'group';
  if (other) return 'others';
  return undefined;
}

function ownerProblem(path: string, stats: Stats, owners: readonly number[]): string | undefined {
  if (owners.includes(stats.uid)) return undefined;
  const wanted = owners.length === 1 ? 'root' : `root or uid ${owners[1]}`;
  return `${quoteName(path)} is owned by uid ${stats.uid}, not ${wanted}`;
}

/** Every directory above `path`, from / down to its parent. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  let dir = dirname(path);
  for (;;) {
    out.unshift(dir);
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return out;
}

/**
 * What a path must be: a regular file; a directory (the stateDir itself); or a
 * directory that will hold the checked thing (the sticky exception applies).
 */
export type TrustKind = 'file' | 'directory' | 'parent';

function directoryProblem(dir: string, stats: Stats, owners: readonly number[], label: string): string | undefined {
  // A symbolic link here means the path changed since it was resolved.
  if (!stats.isDirectory()) return `${quoteName(dir)} is not a directory`;
  const owner = ownerProblem(dir, stats, owners);
  if (owner) return owner;
  const who = writers(stats.mode);
  if (who && (stats.mode & STICKY) === 0) return `${label}${quoteName(dir)} is writable by ${who} (mode ${octal(stats.mode)})`;
  return undefined;
}

/**
 * Why the real (symlink-free, absolute) path `path` is not a trusted place, or
 * undefined when it is. `kind` is what the path itself must be.
 */
export async function untrustedReason(
  path: string,
  kind: TrustKind,
  owners: readonly number[] = trustedOwners(),
): Promise<string | undefined> {
  return untrustedReasonSync(path, kind, owners);
}

/** untrustedReason without the promise; throws what lstat throws. */
function untrustedReasonSync(path: string, kind: TrustKind, owners: readonly number[] = trustedOwners()): string | undefined {
  for (const dir of ancestors(path)) {
    const problem = directoryProblem(dir, lstat(dir), owners, 'its directory ');
    if (problem) return problem;
  }
  const stats = lstat(path);
  if (kind === 'parent') return directoryProblem(path, stats, owners, 'its directory ');
  if (kind === 'file' && !stats.isFile()) return `${quoteName(path)} is not a regular file`;
  if (kind === 'directory' && !stats.isDirectory()) return `${quoteName(path)} is not a directory`;
  const owner = ownerProblem(path, stats, owners);
  if (owner) return owner;
  const who = writers(stats.mode);
  if (who) return `${quoteName(path)} is writable by ${who} (mode ${octal(stats.mode)})`;
  return undefined;
}

/**
 * The first symbolic link met while resolving `path` (in links' targets too) that is owned by
 * someone other than `owners`, as a reason; undefined when there is none. The real path alone
 * cannot show it: a link another user planted in a sticky directory (/tmp) may lead to a place
 * that passes every check, such as /etc, and the program would then read or write there. A part
 * of the path that does not exist ends the walk (what is created there is checked afterwards).
 */
function linkProblem(path: string, owners: readonly number[] = trustedOwners()): string | undefined {
  const pending = resolve(path).split('/').filter(Boolean);
  let current = '/';
  for (let links = 0; pending.length > 0;) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      current = dirname(current);
      continue;
    }
    const next = join(current, name);
    let stats: Stats;
    try {
      stats = lstat(next);
    } catch {
      return undefined;
    }
    if (!stats.isSymbolicLink()) {
      current = next;
      continue;
    }
    if (!owners.includes(stats.uid))
      return `the symbolic link ${quoteName(next)} is owned by uid ${stats.uid}, not ${owners.length === 1 ? 'root' : `root or uid ${owners[1]}`}`;
    if (++links > 40) return `too many symbolic links in ${quoteName(path)}`;
    const target = readlinkSync(next);
    pending.unshift(...target.split('/').filter(Boolean));
    if (isAbsolute(target)) current = '/';
  }
  return undefined;
}

/**
 * Resolves `path` and checks that it is a trusted place; returns the real path. A symbolic link on
 * the way that another user owns is refused too (linkProblem).
 * Throws a one-line ConfigError starting with `what` (for example
 * "config /etc/zfs-dynamic-creator/config.js") and saying why.
 */
export async function assertTrusted(
  path: string,
  kind: TrustKind,
  what: string,
  owners: readonly number[] = trustedOwners(),
): Promise<string> {
  return assertTrustedSync(path, kind, what, owners);
}

/** assertTrusted, for the callers that cannot wait (the program's launcher). */
export function assertTrustedSync(path: string, kind: TrustKind, what: string, owners: readonly number[] = trustedOwners()): string {
  const planted = linkProblem(path, owners);
  if (planted !== undefined) throw new ConfigError(`${what}: refused: ${planted}; ${ruleText(owners)}`);
  let real: string;
  try {
    real = realpathSync.native(path);
  } catch (error) {
    throw new ConfigError(
      `${what}: cannot resolve ${quoteName(path)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let reason: string | undefined;
  try {
    reason = untrustedReasonSync(real, kind, owners);
  } catch (error) {
    reason = `cannot check ${quoteName(real)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  }
  if (reason !== undefined) {
    const via = real === path ? '' : ` (resolved to ${quoteName(real)})`;
    throw new ConfigError(`${what}${via}: refused: ${reason}; ${ruleText(owners)}`);
  }
  return real;
}

function ruleText(owners: readonly number[]): string {
  const who = owners.length === 1 ? 'root' : `root or uid ${owners[1]}`;
  return `it and every directory above it must be owned by ${who} and not writable by group or others (a sticky directory such as /tmp excepted)`;
}

/**
 * The state directory: checks the part of `stateDir` that exists, creates the
 * rest (mode 0700) unless `create` is false, then checks the whole path.
 * Returns the real path (or `stateDir` itself when it does not exist and was not created).
 */
export async function prepareStateDir(
  stateDir: string,
  options: { create: boolean; owners?: readonly number[] } = { create: true },
): Promise<string> {
  return prepareTrustedDir(stateDir, { ...options, what: `stateDir ${quoteName(stateDir)}` });
}

/**
 * A directory of the program's own in a trusted place (the stateDir, the compile cache): the part
 * of `dir` that exists is checked first, then each missing directory is made (mode 0700) one at a
 * time and checked before anything is made inside it, so nothing is ever made through a link or in
 * a directory that another user made in the meantime (possible in a sticky directory such as
 * /tmp). Returns the real path, or `dir` itself when it does not exist and `create` is false.
 * Throws a one-line ConfigError starting with `what`.
 */
export function prepareTrustedDir(dir: string, options: { create: boolean; what: string; owners?: readonly number[] }): string {
  const owners = options.owners ?? trustedOwners();
  const { what } = options;
  let existing = dir;
  for (;;) {
    try {
      lstat(existing);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new ConfigError(
          `${what}: cannot check ${quoteName(existing)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
      const parent = dirname(existing);
      if (parent === existing) break;
      existing = parent;
    }
  }
  const checked = assertTrustedSync(existing, existing === dir ? 'directory' : 'parent', what, owners);
  if (existing === dir) return checked;
  if (!options.create) return dir;
  const missing: string[] = [];
  for (let d = dir; d !== existing && d !== dirname(d); d = dirname(d)) missing.unshift(d);
  let real = checked;
  for (const d of missing) {
    try {
      mkdir(d, { mode: 0o700 });
    } catch (error) {
      // Made by someone else in the instant between: checked below like one made here.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new ConfigError(`${what}: cannot create it: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    real = assertTrustedSync(d, d === dir ? 'directory' : 'parent', what, owners);
  }
  return real;
}
