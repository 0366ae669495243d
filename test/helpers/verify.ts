/** Tree comparison for tests and benchmarks (path-based: only for trees nobody else touches). */
/**
 * Verification: every entry of the original must be present and equal in the
 * copy: type, size, mtime, mode, owner, group, link target, hard-link groups,
 * and, when asked, content.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, opendir, readlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { isErrno } from '../../src/core/index.js';

export interface VerifyOptions {
  /** Compare file contents (SHA-256) too. */
  readonly content: boolean;
  /** Stop after this many differences. */
  readonly maxDifferences?: number;
}

export interface VerifyResult {
  readonly entries: number;
  readonly bytes: number;
  readonly differences: string[];
}

function kind(s: Stats): string {
  if (s.isFile()) return 'file';
  if (s.isDirectory()) return 'directory';
  if (s.isSymbolicLink()) return 'symlink';
  if (s.isFIFO()) return 'fifo';
  if (s.isSocket()) return 'socket';
  if (s.isCharacterDevice()) return 'char device';
  if (s.isBlockDevice()) return 'block device';
  return 'unknown';
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Compares the tree under `original` with the one under `copy`. */
export async function verifyTree(original: string, copy: string, options: VerifyOptions): Promise<VerifyResult> {
  const max = options.maxDifferences ?? 20;
  const differences: string[] = [];
  let entries = 0;
  let bytes = 0;
  // original inode -> copy inode, for hard links
  const links = new Map<string, string>();

  const compare = async (rel: string): Promise<boolean> => {
    const a = await lstat(`${original}${rel}`);
    let b: Stats;
    try {
      b = await lstat(`${copy}${rel}`);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) {
        differences.push(`${rel || '/'}: missing from the copy`);
        return false;
      }
      throw error;
    }
    entries++;
    const where = rel || '/';
    const diff = (what: string): void => {
      differences.push(`${where}: ${what}`);
    };
    if (kind(a) !== kind(b)) {
      diff(`is a ${kind(a)} in the original, a ${kind(b)} in the copy`);
      return false;
    }
    if ((a.mode & 0o7777) !== (b.mode & 0o7777) && !a.isSymbolicLink())
      diff(`mode ${(a.mode & 0o7777).toString(8)} vs ${(b.mode & 0o7777).toString(8)}`);
    if (a.uid !== b.uid || a.gid !== b.gid) diff(`owner ${a.uid}:${a.gid} vs ${b.uid}:${b.gid}`);
    if (a.isFile()) {
      bytes += a.size;
      if (a.size !== b.size) diff(`size ${a.size} vs ${b.size}`);
      else if (Math.floor(a.mtimeMs) !== Math.floor(b.mtimeMs)) diff(`mtime ${a.mtime.toISOString()} vs ${b.mtime.toISOString()}`);
      else if (options.content && (await sha256(`${original}${rel}`)) !== (await sha256(`${copy}${rel}`))) diff('content differs');
      if (a.nlink > 1) {
        const key = `${a.dev}:${a.ino}`;
        const seen = links.get(key);
        const target = `${b.dev}:${b.ino}`;
        if (seen === undefined) links.set(key, target);
        else if (seen !== target) diff('hard link to an earlier file is a separate file in the copy');
      }
    } else if (a.isSymbolicLink()) {
      const [ta, tb] = await Promise.all([readlink(`${original}${rel}`), readlink(`${copy}${rel}`)]);
      if (ta !== tb) diff(`link target ${JSON.stringify(ta)} vs ${JSON.stringify(tb)}`);
    } else if (a.isCharacterDevice() || a.isBlockDevice()) {
      if (a.rdev !== b.rdev) diff('device number differs');
    }
    return a.isDirectory();
  };

  const walk = async (rel: string): Promise<void> => {
    if (differences.length >= max) return;
    const isDir = await compare(rel);
    if (!isDir) return;
    const dir = await opendir(`${original}${rel}`);
    for await (const entry of dir) {
      if (differences.length >= max) break;
      await walk(`${rel}/${entry.name}`);
    }
  };

  await walk('');
  return { entries, bytes, differences };
}
