/** One regular file copied: exactly the file listed, into a new name, owner first, holes kept, times to the microsecond. */
import { constants } from 'node:fs';
import { copyFile, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { copyXattrs } from '../xattr.js';
import { at, type DirRef } from './dir.js';
import type { EntryInfo } from './entry.js';
import { errnoCode, TreeChangedError } from './errors.js';
import { displayPath } from './names.js';
import { checkReplaced, tempName } from './metadata.js';
import type { CopyOptions } from './copy.js';

/** Node's whole-millisecond view of a time in ns (what stat's mtimeMs gives, floored, as the comparisons use it). */
function wholeMs(ns: bigint): number {
  const sec = ns / 1_000_000_000n;
  return Math.floor(Number(sec) * 1e3 + Number(ns - sec * 1_000_000_000n) / 1e6);
}

/**
 * The seconds to give utimes() so that the copy's time is the source's to the microsecond and,
 * always, in the same whole millisecond as Node reports the source's (the catch-up and the
 * verification compare whole milliseconds). Node 20's libuv turns the double into a timespec and
 * keeps microseconds only (Node 22 and later keep the rest, so there the copy is about 0.5 µs
 * later than its source), and a double near 1.8e9 s is exact to about 240 ns only: `x / 1000` of a
 * time on a millisecond boundary (as the kernel's coarse clock makes them, and as OpenZFS keeps
 * them to the nanosecond) lands just below it, so the copy would show the millisecond before and
 * every later pass would see the source as changed again. Hence 0.5 µs into the microsecond, and
 * for a time within a double's rounding of its millisecond's end, the middle of that millisecond.
 */
export function stampSeconds(ns: bigint): number {
  if (ns < 0n) return Number(ns) / 1e9;
  const sec = ns / 1_000_000_000n;
  const us = (ns - sec * 1_000_000_000n) / 1_000n;
  const want = wholeMs(ns);
  if (wholeMs(sec * 1_000_000_000n + us * 1_000n) === want) return Number(sec) + (Number(us) * 1000 + 500) / 1e9;
  const ms = BigInt(want);
  const msec = ms / 1000n;
  return Number(msec) + Number(ms - msec * 1000n) / 1e3 + 0.0005;
}

export async function copyFileEntry(
  src: DirRef,
  srcName: string,
  dst: DirRef,
  dstName: string,
  info: EntryInfo,
  opts?: CopyOptions,
): Promise<{ bytes: number }> {
  let input: FileHandle;
  try {
    // O_NONBLOCK: a fifo swapped in does not block the open (and is refused just below).
    input = await open(at(src, srcName), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ELOOP' || code === 'ENOENT' || code === 'ENXIO') {
      throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} changed before it could be copied`);
    }
    throw error;
  }
  try {
    const st = await input.stat({ bigint: true });
    if (!st.isFile() || Number(st.dev) !== info.dev || Number(st.ino) !== info.ino) {
      throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} is no longer the file that was listed`);
    }
    const tmp = tempName();
    const output = await open(at(dst, tmp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    let renamed = false;
    try {
      // The owner first: a root-owned file never carries the source's setuid bits (fs.copyFile
      // sets the source's mode before copying).
      await output.chown(info.uid, info.gid);
      // A file with holes (fewer blocks than its length) keeps them; others by copy_file_range.
      if (st.blocks * 512n < st.size) await copySparse(input, output);
      else await copyFile(`/proc/self/fd/${input.fd}`, `/proc/self/fd/${output.fd}`);
      const written = await output.stat();
      await output.chown(info.uid, info.gid);
      await output.chmod(info.mode);
      await copyXattrs(input.fd, output.fd);
      // The times the source had before it was read (a change during the copy makes it newer).
      await output.utimes(stampSeconds(st.atimeNs), stampSeconds(st.mtimeNs));
      await checkReplaced(dst, dstName, opts?.replaces, info.rel);
      await rename(at(dst, tmp), at(dst, dstName));
      renamed = true;
      opts?.onBytes?.(written.size);
      return { bytes: written.size };
    } finally {
      await output.close();
      if (!renamed) await unlink(at(dst, tmp)).catch(() => undefined);
    }
  } finally {
    await input.close();
  }
}

/** Reads of the sparse copy, and the size of a hole it can leave (a block of zeros is not written). */
const SPARSE_CHUNK = 1 << 20;

const SPARSE_BLOCK = 4096;

const ZEROS = Buffer.alloc(SPARSE_BLOCK);

/**
 * Copies `input` to `output` (both at offset 0, output empty) without writing blocks of zeros:
 * they are left as holes, and the length is set at the end. Returns the bytes copied (the length).
 */
export async function copySparse(input: FileHandle, output: FileHandle): Promise<number> {
  const buffer = Buffer.allocUnsafe(SPARSE_CHUNK);
  let position = 0;
  for (;;) {
    const { bytesRead } = await input.read(buffer, 0, SPARSE_CHUNK, position);
    if (bytesRead === 0) break;
    // Each run of blocks that are not all zeros is written in one call, at its place.
    let start = -1;
    for (let at = 0; at < bytesRead + SPARSE_BLOCK; at += SPARSE_BLOCK) {
      const end = Math.min(at + SPARSE_BLOCK, bytesRead);
      const zero = at >= bytesRead || buffer.subarray(at, end).equals(ZEROS.subarray(0, end - at));
      if (!zero && start < 0) start = at;
      if (zero && start >= 0) {
        await output.write(buffer, start, Math.min(at, bytesRead) - start, position + start);
        start = -1;
      }
    }
    position += bytesRead;
  }
  await output.truncate(position);
  return position;
}
