import { describe, expect, it } from 'vitest';
import { decide, decideBelowGone, difference, represented, same, type Meta } from '../../plugins/rsync/threeway.js';

const file = (over: Partial<Meta> = {}): Meta => ({
  type: 'file',
  mode: 0o644,
  uid: 1000,
  gid: 1000,
  size: 10,
  mtimeMs: 1_700_000_000_000,
  ...over,
});
const dir = (over: Partial<Meta> = {}): Meta => ({ type: 'dir', mode: 0o755, uid: 1000, gid: 1000, size: 0, mtimeMs: 1, ...over });
const link = (target: string): Meta => ({ type: 'symlink', mode: 0o777, uid: 1000, gid: 1000, size: target.length, mtimeMs: 1, target });

describe("the three-way rule: only the original's own changes are carried over", () => {
  const base = file();
  it('keeps every change users made in the dataset while the original stayed as it was', () => {
    expect(decide(base, base, file({ mode: 0o600 }))).toBe('keep'); // chmod 600 on a file
    expect(decide(dir(), dir(), dir({ mode: 0o700 }))).toBe('keep'); // chmod 700 on a directory
    expect(decide(link('a'), link('a'), link('b'))).toBe('keep'); // a re-pointed symlink
    expect(decide(base, base, undefined)).toBe('keep'); // a file deleted in the dataset
    expect(decide(base, base, file({ mtimeMs: 1_600_000_000_000 }))).toBe('keep'); // restored from a backup, older
  });
  it('copies a late change to the original when the dataset did not change', () => {
    expect(decide(file({ size: 20, mtimeMs: 1_700_000_001_000 }), base, base)).toBe('copy');
    expect(decide(dir({ mode: 0o750 }), dir(), dir())).toBe('copy');
  });
  it('copies an entry new in the original that the dataset does not have', () => {
    expect(decide(file(), undefined, undefined)).toBe('copy');
  });
  it('adopts an entry that is already equal on both sides', () => {
    expect(decide(file({ size: 20 }), base, file({ size: 20 }))).toBe('adopt');
    expect(decide(file(), undefined, file())).toBe('adopt');
  });
  it('calls it a conflict when both sides changed differently, or the dataset deleted what the original changed', () => {
    expect(decide(file({ size: 20 }), base, file({ size: 30 }))).toBe('conflict');
    expect(decide(file({ size: 20 }), base, undefined)).toBe('conflict');
    expect(decide(file(), undefined, file({ uid: 0 }))).toBe('conflict');
    expect(decide(dir(), file(), file())).toBe('conflict'); // a type change is never applied over data
  });
  it('never acts on an entry deleted from the original', () => {
    expect(decide(undefined, base, base)).toBe('keep');
    expect(decide(undefined, undefined, base)).toBe('keep');
  });
  it('says when the original is represented in the dataset', () => {
    expect(represented(base, base, undefined)).toBe(true);
    expect(represented(base, undefined, base)).toBe(true);
    expect(represented(file({ size: 20 }), base, base)).toBe(false);
    expect(represented(file(), undefined, undefined)).toBe(false);
  });
  it('compares what matters for each type', () => {
    expect(same(dir({ mtimeMs: 5, size: 4096 }), dir({ mtimeMs: 9, size: 8192 }))).toBe(true);
    expect(same(file({ mtimeMs: 1000.4 }), file({ mtimeMs: 1000.9 }))).toBe(true);
    expect(same(link('a'), { ...link('a'), mode: 0o755 })).toBe(true);
    expect(difference(file(), file({ mode: 0o600, size: 3 }))).toBe('mode 644 vs 600, size 10 vs 3');
  });
  it('below a directory the dataset renamed, deleted or replaced: unchanged entries went with it, any change is a conflict (never copied, never dropped)', () => {
    expect(decideBelowGone(base, base)).toBe('keep');
    expect(decideBelowGone(dir(), dir())).toBe('keep');
    expect(decideBelowGone(file({ size: 20, mtimeMs: 1_700_000_001_000 }), base)).toBe('conflict'); // appended through an old descriptor
    expect(decideBelowGone(file(), undefined)).toBe('conflict'); // new in the original
    expect(decideBelowGone(dir({ mode: 0o700 }), dir())).toBe('conflict');
  });
});
