/**
 * What the run's directory holds, read through its descriptor and never following a link:
 * the entries a pattern names (one lstat per plain component, one bounded listing per pattern
 * component), a small file read whole up to a bound, and when the tree was last written to.
 */
import { constants } from 'node:fs';
import { open, opendir } from 'node:fs/promises';
import { isErrno, NotADirectoryError, openChild, statAt, type DirRef, type EntryInfo } from '../../src/index.js';
import { componentRegex, isWild, splitPattern } from './pattern.js';

/** Names read from one directory for a pattern component (a run's top level holds a few dozen). */
export const LIST_CAP = 4096;
/** Entries looked at to tell when a run was last written to: the run's and its subdirectories'. */
export const ACTIVITY_CAP = 2000;
/** The most read of an XML file (RunParameters.xml is tens of KiB). */
export const READ_CAP = 256 * 1024;

/** What a pattern names: the regular files (markers), and entries of its name that are not files. */
export interface Found {
  readonly files: EntryInfo[];
  readonly odd: string[];
}

const gone = (error: unknown): boolean => isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR');

/** Up to `cap` names of `dir` (latin1, as the safefs primitives carry them). */
export async function listSome(dir: DirRef, cap = LIST_CAP): Promise<string[]> {
  const names: string[] = [];
  const handle = await opendir(dir.self, { encoding: 'latin1', bufferSize: 128 });
  try {
    for (let entry = await handle.read(); entry !== null && names.length < cap; entry = await handle.read()) names.push(entry.name);
  } finally {
    await handle.close();
  }
  return names;
}

/** The entries of `dir` that `parts` name, the last as a file; `rel` is where `dir` is in the run. */
export async function find(dir: DirRef, pattern: string): Promise<Found> {
  const found: Found = { files: [], odd: [] };
  await findIn(dir, splitPattern(pattern), '', found);
  return found;
}

async function findIn(dir: DirRef, parts: readonly string[], rel: string, found: Found): Promise<void> {
  const [head, ...rest] = parts as [string, ...string[]];
  const wild = isWild(head);
  const names = wild ? (await listSome(dir)).filter((n) => componentRegex(head).test(n)) : [head];
  for (const name of names) {
    const path = rel === '' ? name : `${rel}/${name}`;
    if (rest.length === 0) {
      const info = await statAt(dir, name, path, false).catch((error: unknown) => (gone(error) ? undefined : Promise.reject(error)));
      if (info?.type === 'file') found.files.push(info);
      else if (info !== undefined) found.odd.push(`${path} is a ${info.type}, not a file`);
      continue;
    }
    let child: DirRef;
    try {
      child = await openChild(dir, name);
    } catch (error) {
      // A name the pattern matched that is no directory is simply not a match; a plain one is odd.
      if (error instanceof NotADirectoryError && !wild && error.actualType !== undefined)
        found.odd.push(`${path} is a ${error.actualType}, not a directory`);
      else if (!(error instanceof NotADirectoryError) && !gone(error)) throw error;
      continue;
    }
    try {
      await findIn(child, rest, path, found);
    } finally {
      await child.close();
    }
  }
}

/** A small regular file of `dir` (one component), read up to READ_CAP: its text and time, what it is instead, or undefined. */
export async function readSmall(dir: DirRef, name: string): Promise<{ text: string; mtimeMs: number } | { odd: string } | undefined> {
  let handle;
  try {
    // O_NONBLOCK: a FIFO put in a marker's place must not hang the look.
    handle = await open(dir.at(name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    if (gone(error)) return undefined;
    if (isErrno(error, 'ELOOP')) return { odd: `${name} is a symlink, not a file` };
    if (isErrno(error, 'ENXIO')) return { odd: `${name} is not a regular file` }; // a socket: open(2) says ENXIO
    // A write lease held on it (Samba's kernel oplocks, knfsd's delegations, or its owner's): read at a later look.
    if (isErrno(error, 'EAGAIN') || isErrno(error, 'EWOULDBLOCK'))
      return { odd: `${name} cannot be read now (a lease on it is being broken)` };
    throw error;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { odd: `${name} is not a regular file` };
    const buffer = Buffer.alloc(Math.min(READ_CAP, st.size));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return { text: buffer.subarray(0, bytesRead).toString('utf8'), mtimeMs: st.mtimeMs };
  } finally {
    await handle.close();
  }
}

/**
 * When the run was last written to, as far as a bounded look tells: the newest mtime or ctime of
 * the run's directory, its entries and its subdirectories' entries (ACTIVITY_CAP entries at most).
 */
export async function lastWritten(dir: DirRef, cap = ACTIVITY_CAP): Promise<number> {
  const own = await dir.info();
  let newest = Math.max(own.mtimeMs, own.ctimeMs);
  let left = cap;
  const subdirs: string[] = [];
  const see = async (at: DirRef, name: string): Promise<EntryInfo | undefined> => {
    left--;
    const info = await statAt(at, name, name, false).catch(() => undefined);
    if (info) newest = Math.max(newest, info.mtimeMs, info.ctimeMs);
    return info;
  };
  for (const name of await listSome(dir, left)) if ((await see(dir, name))?.type === 'dir') subdirs.push(name);
  for (const name of subdirs) {
    if (left <= 0) break;
    const child = await openChild(dir, name).catch(() => undefined);
    if (!child) continue;
    try {
      for (const entry of await listSome(child, left)) await see(child, entry);
    } finally {
      await child.close();
    }
  }
  return newest;
}
