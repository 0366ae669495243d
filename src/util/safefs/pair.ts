/** walkPair(): the union of two trees in one pass (a copy and its original, side by side). */
import type { DirRef } from './dir.js';
import type { EntryInfo } from './entry.js';
import { contextOf, fanOut, type WalkContext, type WalkOptions, type WalkResult } from './context.js';
import { listDir, openListed } from './list.js';
import { descend } from './walk.js';

/** What walkPair calls for each rel; `alone`: below a directory only side a holds (see WalkPairOptions.alone). */
export type PairVisit = (rel: string, x: EntryInfo | undefined, y: EntryInfo | undefined, alone?: boolean) => void | Promise<void>;

async function descendPair(
  ctx: WalkContext,
  a: DirRef,
  b: DirRef,
  rel: string,
  roots: [{ dev: number; mount: number | undefined }, { dev: number; mount: number | undefined }],
  visit: PairVisit,
  opts: WalkPairOptions | undefined,
): Promise<void> {
  if (ctx.stopped) return;
  const [xs, ys] = await Promise.all([listDir(ctx, a, rel, roots[0].dev), listDir(ctx, b, rel, roots[1].dev)]);
  const both: [EntryInfo, EntryInfo | undefined][] = [];
  const held = xs.length + ys.length;
  ctx.held += held;
  try {
    await visitMerged(ctx, xs, ys, visit, both, opts?.alone === true);
  } finally {
    ctx.held -= held;
  }
  if (ctx.stopped) return;
  if (opts?.listed) {
    const r = opts.listed(rel);
    if (r !== undefined) await r;
  }
  await fanOut(ctx, both, async ([p, q]) => {
    const ca = await openListed(a, p, roots[0].mount);
    try {
      if (q === undefined) {
        await descend(ctx, ca, p.rel, roots[0], (e) => visit(e.rel, e, undefined, true), undefined);
        return;
      }
      const cb = await openListed(b, q, roots[1].mount);
      try {
        await descendPair(ctx, ca, cb, p.rel, roots, visit, opts);
      } finally {
        await cb.close();
      }
    } finally {
      await ca.close();
    }
  });
}

/** Visits the union of two listings (each in byte order of names); directories both hold go to `both`. */
async function visitMerged(
  ctx: WalkContext,
  xs: readonly EntryInfo[],
  ys: readonly EntryInfo[],
  visit: PairVisit,
  both: [EntryInfo, EntryInfo | undefined][],
  alone: boolean,
): Promise<void> {
  let i = 0;
  let j = 0;
  while (i < xs.length || j < ys.length) {
    if (ctx.stopped) return;
    const x = xs[i];
    const y = ys[j];
    let pair: [EntryInfo | undefined, EntryInfo | undefined];
    if (x !== undefined && (y === undefined || x.name < y.name)) {
      pair = [x, undefined];
      i++;
    } else if (y !== undefined && (x === undefined || y.name < x.name)) {
      pair = [undefined, y];
      j++;
    } else {
      pair = [x, y];
      i++;
      j++;
    }
    const [p, q] = pair;
    if (p) ctx.count(p);
    else if (q) ctx.count(q);
    const r = visit((p ?? q)!.rel, p, q);
    if (r !== undefined) await r;
    if (p?.type === 'dir' && q?.type === 'dir' && !p.crossDevice && !q.crossDevice) both.push([p, q]);
    else if (alone && p?.type === 'dir' && !p.crossDevice) both.push([p, undefined]);
  }
}

export interface WalkPairOptions extends WalkOptions {
  /**
   * Called (and awaited) once every entry of a directory both sides hold (rel; '' for the roots)
   * has been visited, before anything below it is: its entries are complete from here on.
   */
  listed?: (rel: string) => void | Promise<void>;
  /**
   * Also walk side a's subtree below a directory side b lacks (or holds as another type, or on
   * another device): each entry there is visited with y undefined and `alone` true.
   */
  alone?: boolean;
}

/**
 * The union of two trees in one pass: visit(rel, x, y) for every rel present on either side
 * (undefined where absent). Descends only where both sides are directories on their own root's
 * device; an entry present on one side only is reported once, its subtree not walked (side a's
 * is, with `alone`).
 * `entries` counts rels (each once); `bytes` counts side a's files (side b's where a lacks the rel).
 */
export async function walkPair(a: DirRef, b: DirRef, visit: PairVisit, opts?: WalkPairOptions): Promise<WalkResult> {
  const ctx = contextOf(opts);
  try {
    const [x, y] = await Promise.all([a.info(), b.info()]);
    ctx.count(x);
    const r = visit('', x, y);
    if (r !== undefined) await r;
    const roots: [{ dev: number; mount: number | undefined }, { dev: number; mount: number | undefined }] = [
      { dev: a.dev, mount: await a.mountId() },
      { dev: b.dev, mount: await b.mountId() },
    ];
    await descendPair(ctx, a, b, '', roots, visit, opts);
  } catch (error) {
    ctx.fail(error);
  }
  if (ctx.stopped) throw ctx.error;
  return { entries: ctx.entries, bytes: ctx.bytes };
}
