/**
 * The seal (migrate's second step): the copy is checked against the original, entry by entry.
 * Anything in it that the original does not hold (a file deleted meanwhile, or content read
 * through a symlink swapped in during the copy) is removed; what is left is recorded as the
 * baseline manifest; what the original holds and the copy now lacks is copied in by descriptor
 * (a pass), still before the commit, so that the copy is complete when it becomes visible.
 */
import { unlink } from 'node:fs/promises';
import {
  nameOf,
  parentOf,
  TreeChangedError,
  at,
  ensureDir,
  openDir,
  removeTree,
  walkPair,
  type DirRef,
  type EntryInfo,
  type Job,
} from '../../src/index.js';
import { Manifest, ManifestWriter } from './manifest.js';
import type { RsyncContext } from './options.js';
import { pass } from './pass.js';
import { manifestOf } from './places.js';
import { metaOf, same, type Meta } from './threeway.js';

/** Tries of the comparison when the original changes under it. */
const ATTEMPTS = 5;

/** One comparison of the copy with the original, writing the manifest as it goes. */
class Comparison {
  /** Entries of the copy not as in the original: taken out. */
  readonly extra: { rel: string; info: EntryInfo }[] = [];
  /** Entries of the original the copy lacks. */
  missing = 0;
  /** Directories of the copy taken out whole: nothing below them is recorded. */
  private readonly dropped = new Set<string>();
  /** A directory's entries, until all are seen: then written as its block of the manifest. */
  private readonly listing = new Map<string, [string, Meta][]>();

  constructor(readonly writer: ManifestWriter) {}

  run(original: DirRef, copy: DirRef, signal: AbortSignal): Promise<unknown> {
    return walkPair(original, copy, (rel, o, s) => this.visit(rel, o, s), { signal, listed: (rel) => this.listed(rel) });
  }

  private visit(rel: string, o: EntryInfo | undefined, s: EntryInfo | undefined): Promise<void> | undefined {
    if (rel !== '' && this.dropped.has(parentOf(rel))) {
      if (s?.type === 'dir') this.dropped.add(rel);
      return;
    }
    if (s === undefined) {
      if (o !== undefined) this.missing++;
      return;
    }
    // In the copy but not (as such) in the original: deleted meanwhile, or read
    // through a symlink swapped in during the copy. Never let it become visible.
    if (o === undefined || o.type !== s.type || o.uid !== s.uid || o.gid !== s.gid || o.crossDevice) {
      if (rel === '') throw new Error("the copy's top directory does not match the original");
      this.extra.push({ rel, info: s });
      if (s.type === 'dir') this.dropped.add(rel);
      return;
    }
    // Not what the original holds now (changed after rsync read it, or read through
    // a swapped symlink): dropped, and copied again below by descriptor.
    if (s.type !== 'dir' && !same(o, s)) {
      this.extra.push({ rel, info: s });
      return;
    }
    if (rel === '') return this.writer.block(null, [['', metaOf(s)]]);
    const parent = parentOf(rel);
    let entries = this.listing.get(parent);
    if (entries === undefined) this.listing.set(parent, (entries = []));
    entries.push([nameOf(rel), metaOf(s)]);
    return undefined;
  }

  private listed(rel: string): Promise<void> | undefined {
    const entries = this.listing.get(rel);
    this.listing.delete(rel);
    return entries && this.writer.block(rel, entries);
  }
}

/** Compares, again from the start (a fresh manifest) while the original changes under the walk. */
async function compare(ctx: RsyncContext, job: Job, original: DirRef, copy: DirRef): Promise<Comparison> {
  for (let attempt = 1; ; attempt++) {
    const c = new Comparison(await ManifestWriter.create(manifestOf(ctx, job)));
    try {
      await c.run(original, copy, job.signal);
      return c;
    } catch (error) {
      await c.writer.abort();
      if (!(error instanceof TreeChangedError) || attempt >= ATTEMPTS) throw error;
    }
  }
}

/** Removes the extra entries from the staging copy (root-only until the commit), by descriptor, deepest first. */
async function takeOut(copy: DirRef, extra: readonly { rel: string; info: EntryInfo }[]): Promise<void> {
  for (const { rel, info } of [...extra].sort((a, b) => (a.rel < b.rel ? 1 : -1))) {
    const parent = rel.includes('/') ? await ensureDir(copy, parentOf(rel)) : copy;
    try {
      if (info.type === 'dir') await removeTree(parent, nameOf(rel), { dev: info.dev, ino: info.ino });
      else await unlink(at(parent, nameOf(rel)));
    } finally {
      if (parent !== copy) await parent.close();
    }
  }
}

/** The seal of the copy in `staging` against the original (open, identity-checked). */
export async function seal(ctx: RsyncContext, job: Job, original: DirRef, staging: string): Promise<void> {
  const copy = await openDir(staging);
  let writer: ManifestWriter | undefined;
  try {
    const c = await compare(ctx, job, original, copy);
    writer = c.writer;
    await takeOut(copy, c.extra);
    const n = c.extra.length;
    if (n > 0)
      job.log.info(`${n} entr${n === 1 ? 'y' : 'ies'} of the copy not as in the original (changed or deleted meanwhile) taken out`, {
        step: 'migrate/seal',
      });
    await writer.commit();
    writer = undefined;
    // What the original holds and the copy now lacks is copied in by descriptor. (A copy that
    // matched the original entry for entry needs no second walk for that.)
    if (n === 0 && c.missing === 0) return;
    const refill = await pass(ctx, job, original, copy, await Manifest.open(manifestOf(ctx, job)));
    if (refill.copied > 0)
      job.log.info(`${refill.copied} entr${refill.copied === 1 ? 'y' : 'ies'} copied again by descriptor`, { step: 'migrate/seal' });
  } finally {
    await writer?.abort();
    await copy.close();
  }
}
