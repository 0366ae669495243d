/** What one walk (or removal) shares: its options, its limiter, its first error, its counts. */
import { boundHeapGrowth } from '../heap.js';
import { Limiter } from '../limit.js';
import type { EntryInfo } from './entry.js';

export interface WalkOptions {
  /** lstat calls in flight and subtrees walked in parallel (default 32). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Read symlink targets into EntryInfo.target (default true). */
  readTargets?: boolean;
  /**
   * lstat in the main thread instead of through the libuv thread pool (default false), giving the
   * event loop a turn every 256 entries. Faster when metadata is cached (measured 2 to 3 times on
   * this kind of machine, ext4 and zfs-fuse), but gains nothing from parallel I/O on a cold cache.
   */
  syncStat?: boolean;
}

export interface WalkResult {
  /** Entries reported, the root included. */
  entries: number;
  /** Sum of the sizes of regular files. */
  bytes: number;
}

/** State shared by one walk. Errors are recorded here (the first wins) and rethrown at the end. */
export class WalkContext {
  readonly limiter: Limiter;
  /** Subtrees that may still be walked in parallel to their siblings. */
  slots: number;
  /** Entries of listings being handled now (held in memory). */
  held = 0;
  error: unknown;
  entries = 0;
  bytes = 0;
  constructor(
    readonly concurrency: number,
    readonly signal: AbortSignal | undefined,
    readonly readTargets: boolean,
    readonly syncStat = false,
  ) {
    this.limiter = new Limiter(concurrency);
    this.slots = concurrency - 1;
  }
  fail(error: unknown): void {
    this.error ??= error;
  }
  get stopped(): boolean {
    if (this.error === undefined && this.signal?.aborted) this.error = this.signal.reason ?? new Error('aborted');
    return this.error !== undefined;
  }
  count(info: EntryInfo): void {
    this.entries++;
    if (info.type === 'file') this.bytes += info.size;
  }
}

/**
 * A subtree is started in parallel to its siblings only while fewer entries than this are held in
 * listings being handled: what a walk holds is then about this plus depth × the largest directory,
 * however many subtrees could run at once. (lstat calls stay `concurrency` in flight either way.)
 */
export const WALK_HELD_BUDGET = 4096;

/** Entries handled synchronously (syncStat) before the event loop gets a turn. */
export const SYNC_CHUNK = 256;

export function contextOf(opts: WalkOptions | undefined): WalkContext {
  // Walks make garbage fast: from the first one on, keep the heap near its live data (util/heap.ts).
  // Not earlier: a run that only rejects a name would collect more often while it loads.
  boundHeapGrowth();
  const concurrency = Math.max(1, Math.floor(opts?.concurrency ?? 32));
  return new WalkContext(concurrency, opts?.signal, opts?.readTargets ?? true, opts?.syncStat ?? false);
}

/** Runs fn over items, at most the context's concurrency at once, stopping at the first error (recorded in the context). */
export async function forEachLimited<T>(
  ctx: WalkContext,
  items: readonly T[],
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  const recorded = async (item: T, index: number): Promise<void> => {
    try {
      await fn(item, index);
    } catch (error) {
      ctx.fail(error);
      throw error;
    }
  };
  await ctx.limiter.forEach(items, recorded, () => ctx.stopped);
}

/**
 * Runs `task` for each item: in parallel while the context has free slots (bounding open
 * descriptors by depth × concurrency), inline otherwise. Never throws; errors go to the context.
 */
export async function fanOut<T>(ctx: WalkContext, items: readonly T[], task: (item: T, index: number) => Promise<void>): Promise<void> {
  const pending: Promise<void>[] = [];
  for (let i = 0; i < items.length && !ctx.stopped; i++) {
    const item = items[i]!;
    if (ctx.slots > 0 && ctx.held < WALK_HELD_BUDGET && i < items.length - 1) {
      ctx.slots--;
      pending.push(
        task(item, i)
          .catch((error: unknown) => ctx.fail(error))
          .finally(() => {
            ctx.slots++;
          }),
      );
    } else {
      await task(item, i).catch((error: unknown) => ctx.fail(error));
    }
  }
  await Promise.all(pending);
}
