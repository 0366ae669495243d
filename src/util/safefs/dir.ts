/**
 * An open directory (DirRef) and what goes through its descriptor: with the directory open as
 * fd N, the path `/proc/self/fd/N/<name>` is resolved relative to it exactly like openat(N, name).
 */
import { constants } from 'node:fs';
import { lstat, open, readdir, readFile, readlink, type FileHandle } from 'node:fs/promises';
import { infoFrom, typeOf, type EntryInfo, type EntryType, type Identity } from './entry.js';
import { errnoCode, IdentityError, NotADirectoryError } from './errors.js';
import { checkName, displayPath, relFromBuffer } from './names.js';

export const O_PATH = 0o10000000;

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** An open directory: every operation below it goes through its descriptor. */
export class DirRef {
  private closed = false;
  private mnt: Promise<number | undefined> | undefined;
  /** `/proc/self/fd/N/` as bytes. */
  readonly prefix: Buffer;

  constructor(
    readonly handle: FileHandle,
    readonly dev: number,
    readonly ino: number,
    /** For messages only (UTF-8 text, as the directory was reached). */
    readonly path: string,
  ) {
    this.prefix = Buffer.from(`/proc/self/fd/${handle.fd}/`);
  }

  get fd(): number {
    return this.handle.fd;
  }

  get identity(): Identity {
    return { dev: this.dev, ino: this.ino };
  }

  /** `/proc/self/fd/N`: the directory itself. */
  get self(): string {
    return `/proc/self/fd/${this.handle.fd}`;
  }

  /** `/proc/self/fd/N/<name>` as bytes: resolved like openat(N, name). */
  at(name: string): Buffer {
    return at(this, name);
  }

  /** The mount id (from /proc/self/fdinfo), to tell a bind mount of the same filesystem apart. */
  mountId(): Promise<number | undefined> {
    this.mnt ??= readFile(`/proc/self/fdinfo/${this.handle.fd}`, 'utf8').then(
      (text) => {
        const m = /^mnt_id:\s*(\d+)/m.exec(text);
        return m ? Number(m[1]) : undefined;
      },
      () => undefined,
    );
    return this.mnt;
  }

  /** The directory's own metadata (fstat), as the root entry (rel ''). */
  async info(): Promise<EntryInfo> {
    return infoFrom(await this.handle.stat(), '', '');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

/** `/proc/self/fd/N/<name>` as bytes, for any fs call that does not follow the final component. */
export function at(dir: DirRef, name: string): Buffer {
  checkName(name);
  return atListed(dir, name);
}

/** at() for a name just read from the directory (known to be a single component). */
export function atListed(dir: DirRef, name: string): Buffer {
  const buf = Buffer.allocUnsafe(dir.prefix.length + name.length);
  dir.prefix.copy(buf, 0);
  buf.write(name, dir.prefix.length, 'latin1');
  return buf;
}

async function classify(path: string | Buffer): Promise<EntryType | undefined> {
  try {
    return typeOf(await lstat(path));
  } catch {
    return undefined;
  }
}

async function openDirAt(path: string | Buffer, display: string, rel: string, expect: Identity | undefined): Promise<DirRef> {
  let handle: FileHandle;
  try {
    handle = await open(path, DIR_FLAGS);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOTDIR' || code === 'ELOOP') throw new NotADirectoryError(display, await classify(path));
    throw error;
  }
  try {
    const st = await handle.stat();
    if (expect !== undefined && (st.dev !== expect.dev || st.ino !== expect.ino)) {
      throw new IdentityError(rel, display, expect, { dev: st.dev, ino: st.ino });
    }
    return new DirRef(handle, st.dev, st.ino, display);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Opens a directory by path (O_DIRECTORY|O_NOFOLLOW: a symlink as the last component is refused;
 * earlier components are the caller's, trusted). With `expect`, refuses another directory.
 */
export async function openDir(path: string | Buffer, expect?: Identity): Promise<DirRef> {
  const display = typeof path === 'string' ? path : path.toString('utf8');
  const dir = await openDirAt(path, display, '', expect);
  // Everything below goes through /proc/self/fd/N: make sure it leads back to this directory.
  const through = await lstat(`${dir.self}/.`).catch(() => undefined);
  if (through?.dev !== dir.dev || through.ino !== dir.ino) {
    await dir.close();
    throw new Error(`/proc/self/fd does not lead to ${display} (is /proc mounted?); refusing to work without descriptor-relative paths`);
  }
  return dir;
}

/** A second, independent reference to the same directory (through its magic link, not its path). */
export async function reopen(dir: DirRef): Promise<DirRef> {
  // No O_NOFOLLOW here: /proc/self/fd/N is itself a (magic) link, which jumps to exactly the open directory.
  const handle = await open(dir.self, constants.O_RDONLY | constants.O_DIRECTORY);
  const st = await handle.stat();
  if (st.dev !== dir.dev || st.ino !== dir.ino) {
    await handle.close();
    throw new IdentityError('', dir.path, dir.identity, { dev: st.dev, ino: st.ino });
  }
  return new DirRef(handle, st.dev, st.ino, dir.path);
}

/** Opens the subdirectory `name` (latin1) of `dir` through its descriptor, never following a symlink. */
export async function openChild(dir: DirRef, name: string, expect?: Identity): Promise<DirRef> {
  return openDirAt(at(dir, name), `${dir.path}/${displayPath(name)}`, name, expect);
}

/** lstat of `name` in `dir` (never follows), as an EntryInfo with the given rel. */
export async function statAt(dir: DirRef, name: string, rel = name, readTarget = true): Promise<EntryInfo> {
  const path = at(dir, name);
  const info = infoFrom(await lstat(path), rel, name);
  if (readTarget && info.type === 'symlink') info.target = relFromBuffer(await readlink(path, { encoding: 'buffer' }));
  return info;
}

/** The names in `dir` (latin1), sorted by byte value. */
export async function listNames(dir: DirRef): Promise<string[]> {
  const names = await readdir(dir.self, { encoding: 'buffer' });
  return names.map(relFromBuffer).sort();
}
