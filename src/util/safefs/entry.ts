/** What a walk reports of one entry, from lstat. */
import type { Stats } from 'node:fs';

export interface Identity {
  dev: number;
  ino: number;
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block';

export interface EntryInfo {
  /** Path relative to the walk's root, latin1; '' for the root itself. */
  rel: string;
  /** Last component, latin1; '' for the root. */
  name: string;
  type: EntryType;
  dev: number;
  ino: number;
  /** Permission bits including setuid, setgid and sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** 512-byte blocks allocated on disk (st_blocks: fewer than size / 512 for a file with holes). */
  blocks?: number;
  nlink: number;
  rdev: number;
  /** Floored to whole milliseconds. */
  mtimeMs: number;
  ctimeMs: number;
  /** Unfloored (sub-microsecond precision), for digests and for setting times. */
  atimeExactMs: number;
  mtimeExactMs: number;
  ctimeExactMs: number;
  /** Symlink target (latin1), when read. */
  target?: string;
  /** On another device than the walk's root: reported, never descended or removed. */
  crossDevice?: boolean;
}

export function typeOf(st: Stats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'char';
  return 'block';
}

export function infoFrom(st: Stats, rel: string, name: string): EntryInfo {
  return {
    rel,
    name,
    type: typeOf(st),
    dev: st.dev,
    ino: st.ino,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    blocks: st.blocks,
    nlink: st.nlink,
    rdev: st.rdev,
    mtimeMs: Math.floor(st.mtimeMs),
    ctimeMs: Math.floor(st.ctimeMs),
    atimeExactMs: st.atimeMs,
    mtimeExactMs: st.mtimeMs,
    ctimeExactMs: st.ctimeMs,
  };
}
