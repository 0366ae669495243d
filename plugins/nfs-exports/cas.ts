/**
 * Compare-and-swap for a file other people edit by hand (/etc/exports): a write
 * replaces the file only when it is still exactly what we read (content, and the
 * same inode, size and mtime), so an edit made by someone else is never overwritten.
 *
 * The residual window. rename(2) is not conditional: an edit that lands after our
 * last check and before our rename is replaced. The check is therefore made as late
 * as possible: the new content is written and fsynced to a temporary file first,
 * then the file is re-read and compared, then — in back-to-back synchronous calls,
 * with no await in between — the inode at the path is stat'ed once more and the
 * temporary file is renamed over it. What remains is the few microseconds between
 * that stat(2) and rename(2). Two kinds of edit can fall into it:
 *   - an edit written into the file itself (an editor saving in place, `>>`): we keep
 *     the old inode open, see after the rename that it changed, put its new content
 *     back and report a conflict, so the caller plans again on top of it;
 *   - an edit that replaces the file by rename (sed -i, most editors): the kernel
 *     gives no way to notice it (renameat2's RENAME_EXCHANGE would; Node has no
 *     binding), so such an edit, finished within those microseconds, is lost.
 * Creating a file that did not exist uses link(2), which fails when the name exists:
 * no window at all.
 *
 * The temporary file is the API's (writeTempFile, the one atomic writer's first half); the
 * rename is this module's, made only when the file is still what the plan was made from.
 *
 * Our own processes are serialized by a lock around the whole read-plan-write, held
 * by the caller; this module protects against everyone else.
 */
import { closeSync, fstatSync, linkSync, openSync, readSync, renameSync, statSync, unlinkSync, type BigIntStats } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDir, isErrno, writeTempFile } from '../../src/index.js';

/** What a file was when we looked: absent, or its bytes and identity. */
export type FileState =
  | { readonly exists: false }
  | {
      readonly exists: true;
      readonly content: Buffer;
      readonly dev: bigint;
      readonly ino: bigint;
      readonly size: bigint;
      readonly mtimeNs: bigint;
      readonly mode: number;
    };

function identity(st: BigIntStats): { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; mode: number } {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, mode: Number(st.mode & 0o7777n) };
}

/** Reads all of an open file descriptor from offset 0. */
function readAllSync(fd: number): Buffer {
  const chunks: Buffer[] = [];
  let position = 0;
  for (;;) {
    const chunk = Buffer.alloc(64 * 1024);
    const n = readSync(fd, chunk, 0, chunk.length, position);
    if (n === 0) break;
    chunks.push(chunk.subarray(0, n));
    position += n;
  }
  return Buffer.concat(chunks);
}

/** The state of an open descriptor: its bytes and identity, from one fstat before and after the read. */
function stateOfFd(fd: number): FileState {
  // Read until two fstats around the read agree, so content and identity belong together.
  for (let i = 0; ; i++) {
    const st = fstatSync(fd, { bigint: true });
    const content = readAllSync(fd);
    const again = fstatSync(fd, { bigint: true });
    if ((again.mtimeNs === st.mtimeNs && again.size === st.size && BigInt(content.length) === st.size) || i >= 9) {
      return { exists: true, content, ...identity(again) };
    }
  }
}

/** The file's bytes and identity now. */
export async function readState(path: string): Promise<FileState> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return { exists: false };
    throw error;
  }
  try {
    return stateOfFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** Same bytes and same inode, size and mtime (or both absent). */
export function sameState(a: FileState, b: FileState): boolean {
  if (!a.exists || !b.exists) return a.exists === b.exists;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.content.equals(b.content);
}

/** The file's identity at the path right now (a stat, no read). */
function sameInodeSync(path: string, expected: FileState): boolean {
  try {
    const st = statSync(path, { bigint: true });
    return (
      expected.exists && st.dev === expected.dev && st.ino === expected.ino && st.size === expected.size && st.mtimeNs === expected.mtimeNs
    );
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return !expected.exists;
    throw error;
  }
}

async function writeTemp(path: string, content: Buffer, mode: number): Promise<{ tmp: string; state: FileState }> {
  const { tmp, stats } = await writeTempFile(path, content, mode);
  return { tmp, state: { exists: true, content, ...identity(stats) } };
}

export type SwapResult = { readonly ok: true; readonly written: FileState } | { readonly ok: false; readonly current: FileState };

/**
 * Replaces `path` with `content` (or, with `content` undefined, removes it) only if it is
 * still `expected`. On a conflict nothing of ours is left at the path and `current` is what
 * is there now, to plan again from.
 */
export async function replaceIf(path: string, expected: FileState, content: Buffer | undefined, mode?: number): Promise<SwapResult> {
  const temp = content === undefined ? undefined : await writeTemp(path, content, mode ?? (expected.exists ? expected.mode : 0o644));
  const dropTemp = (): void => {
    if (temp) {
      try {
        unlinkSync(temp.tmp);
      } catch {
        // already gone
      }
    }
  };
  // Hold the file we expect open: after the swap it tells whether someone wrote into it meanwhile.
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) {
      dropTemp();
      throw error;
    }
  }
  try {
    const now = fd === undefined ? ({ exists: false } as const) : stateOfFd(fd);
    if (!sameState(now, expected)) {
      dropTemp();
      return { ok: false, current: await readState(path) };
    }
    // From here to the rename: synchronous calls only, nothing else runs in between.
    if (!sameInodeSync(path, expected)) {
      dropTemp();
      return { ok: false, current: await readState(path) };
    }
    try {
      if (!expected.exists) {
        if (!temp) return { ok: true, written: { exists: false } };
        linkSync(temp.tmp, path); // fails with EEXIST when someone created it meanwhile
        unlinkSync(temp.tmp);
      } else if (temp) {
        renameSync(temp.tmp, path);
      } else {
        unlinkSync(path);
      }
    } catch (error) {
      dropTemp();
      if (isErrno(error, 'EEXIST')) return { ok: false, current: await readState(path) };
      throw error;
    }
    await fsyncDir(dirname(path));
    const written: FileState = temp ? temp.state : { exists: false };
    if (fd !== undefined && expected.exists) {
      // Written into in the window between our last stat and the rename: put that edit back.
      const old = stateOfFd(fd);
      if (old.exists && (old.mtimeNs !== expected.mtimeNs || old.size !== expected.size || !old.content.equals(expected.content))) {
        const back = await replaceIf(path, written, old.content, old.mode);
        return { ok: false, current: back.ok ? back.written : back.current };
      }
    }
    return { ok: true, written };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
