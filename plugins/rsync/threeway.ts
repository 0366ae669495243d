/**
 * The three-way rule of the catch-up, as pure functions.
 *
 * Three versions of each entry meet after the commit point:
 *   O  the original, now (moved aside, maybe still written through old descriptors),
 *   B  the baseline: what was in the copy when it became live (recorded from the sealed copy),
 *   D  the live dataset, now (its users may have changed anything since).
 *
 * Only the original's OWN changes are carried over: an entry is copied from O only when O differs
 * from B and D still equals B. When D changed too (and differently), neither is overwritten: that
 * is a conflict, the original is kept and the conflict named. An entry deleted or changed in the
 * dataset is never re-created or reverted from an original that did not change. An entry deleted
 * from the original is never deleted from the dataset.
 */

import type { EntryInfo } from '../../src/index.js';

export type Kind = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block';

/** What is compared of an entry (a subset of a walk's EntryInfo, and what the manifest stores). */
export interface Meta {
  readonly type: Kind;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly rdev?: number;
  readonly target?: string | undefined;
}

/** What is compared of a walk's entry. */
export function metaOf(e: EntryInfo): Meta {
  return {
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    mtimeMs: e.mtimeMs,
    rdev: e.rdev,
    ...(e.target !== undefined ? { target: e.target } : {}),
  };
}

/** Whether two versions of an entry are the same for the purposes of catching up and verifying. */
export function same(a: Meta, b: Meta): boolean {
  if (a.type !== b.type || a.uid !== b.uid || a.gid !== b.gid) return false;
  switch (a.type) {
    case 'file':
      return (a.mode & 0o7777) === (b.mode & 0o7777) && a.size === b.size && Math.floor(a.mtimeMs) === Math.floor(b.mtimeMs);
    case 'dir':
      return (a.mode & 0o7777) === (b.mode & 0o7777);
    case 'symlink':
      return a.target === b.target;
    case 'char':
    case 'block':
      return (a.mode & 0o7777) === (b.mode & 0o7777) && a.rdev === b.rdev;
    default:
      return (a.mode & 0o7777) === (b.mode & 0o7777);
  }
}

/** What differs between two versions, in words (for conflicts and verification reports). */
export function difference(a: Meta, b: Meta): string {
  if (a.type !== b.type) return `a ${a.type} in one, a ${b.type} in the other`;
  const parts: string[] = [];
  if (a.uid !== b.uid || a.gid !== b.gid) parts.push(`owner ${a.uid}:${a.gid} vs ${b.uid}:${b.gid}`);
  if (a.type !== 'symlink' && (a.mode & 0o7777) !== (b.mode & 0o7777))
    parts.push(`mode ${(a.mode & 0o7777).toString(8)} vs ${(b.mode & 0o7777).toString(8)}`);
  if (a.type === 'file' && a.size !== b.size) parts.push(`size ${a.size} vs ${b.size}`);
  if (a.type === 'file' && Math.floor(a.mtimeMs) !== Math.floor(b.mtimeMs))
    parts.push(`mtime ${new Date(a.mtimeMs).toISOString()} vs ${new Date(b.mtimeMs).toISOString()}`);
  if (a.type === 'symlink' && a.target !== b.target) parts.push('link target');
  if ((a.type === 'char' || a.type === 'block') && a.rdev !== b.rdev) parts.push('device number');
  return parts.join(', ') || 'equal';
}

export type Decision =
  /** Nothing to do: the original did not change since the copy (or the entry is gone from it). */
  | 'keep'
  /** The dataset already holds exactly the original's version: only the baseline moves on. */
  | 'adopt'
  /** The original changed and the dataset did not: copy the original's version over. */
  | 'copy'
  /** Both changed, differently (or the dataset deleted what the original changed): touch neither. */
  | 'conflict';

/**
 * The rule for one entry. `o`, `b`, `d`: the original now, the baseline, the dataset now
 * (undefined where the entry does not exist).
 */
export function decide(o: Meta | undefined, b: Meta | undefined, d: Meta | undefined): Decision {
  if (o === undefined) return 'keep';
  if (b !== undefined && same(o, b)) return 'keep';
  if (d !== undefined && same(o, d)) return 'adopt';
  if (d === undefined) return b === undefined ? 'copy' : 'conflict';
  if (b !== undefined && same(d, b) && o.type === d.type) return 'copy';
  return 'conflict';
}

/**
 * The rule below a directory the dataset renamed, deleted or replaced by another type (its users
 * moved or removed it on purpose): an entry of the original unchanged since the baseline is fine
 * (went with it); anything changed or new there is a conflict, never copied (a copy would make
 * the directory again) and never dropped.
 */
export function decideBelowGone(o: Meta, b: Meta | undefined): 'keep' | 'conflict' {
  return b !== undefined && same(o, b) ? 'keep' : 'conflict';
}

/**
 * Whether the original's version of an entry is safely represented in the dataset, so that the
 * original may be removed: the dataset holds it, or the original has not changed since the
 * baseline (whose content reached the dataset at the commit; what users did with it since is theirs).
 */
export function represented(o: Meta, b: Meta | undefined, d: Meta | undefined): boolean {
  return (d !== undefined && same(o, d)) || (b !== undefined && same(o, b));
}
