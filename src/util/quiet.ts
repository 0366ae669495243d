/**
 * The quiet-period waiter (the wait phase's quiet period, the rsync plugin's grace period): waits
 * until a tree, read through an open, identity-checked directory, has stayed unchanged for
 * `quietMs` and nothing holds anything in it (any process, any mount namespace, the NFS server's
 * open state), or until the deadline, or until the signal aborts. The caller says what it means
 * (log lines, progress notes) through the callbacks.
 *
 * Changes are seen through inotify on the tree's directories, so a quiet tree is walked only at
 * the start, whenever an event says something changed (at most every other walk's time), every
 * FULL_CHECK_MS as a fallback, and once more at the end to confirm. A tree with more directories
 * than watches can cover (or unwatched) is walked every other walk's time instead.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TreeChangedError, treeDigest, type DirRef, type EntryInfo } from './safefs/index.js';
import { describeHolders, holdersOf, treeOf, type Holder } from './holders.js';
import type { InodeIndex } from './inodes.js';
import { DirectoryWatches, MAX_WATCHES } from './watches.js';

/** A quiet tree is walked again at least this often, whatever inotify says. */
export const FULL_CHECK_MS = 60_000;

/** One complete walk of the tree. */
export interface QuietLook {
  readonly digest: string;
  readonly index: InodeIndex;
  readonly entries: number;
  readonly bytes: number;
  /** Regular files seen. */
  readonly files: number;
}

export interface QuietOptions {
  /** How long the tree must stay unchanged (0: no quiet period: changes do not matter, only holders do). */
  readonly quietMs: number;
  /** Epoch ms: give up (quiet: false) after this. */
  readonly deadline: number;
  readonly signal: AbortSignal;
  /** Watch the tree's directories with inotify (default true); without, only walks see changes. */
  readonly inotify?: boolean;
  /** Wait while anything holds the tree (default true). */
  readonly holders?: boolean;
  /** After each complete walk. */
  readonly onLook?: (look: QuietLook) => void;
  /** A walk that met the tree changing under it. */
  readonly onUnsettled?: (error: TreeChangedError) => void;
  /**
   * After a walk that saw a change (changed: true; the holders as far as that walk tells) and after
   * each look once the tree stayed unchanged for the quiet period (changed: false): who holds it.
   */
  readonly onHolders?: (holders: readonly Holder[], changed: boolean) => void;
  /** Once per turn while waiting: how long the tree has been unchanged, and the changes seen so far. */
  readonly onTick?: (quietForMs: number, changes: number) => void;
}

export type QuietResult =
  | { readonly quiet: true; readonly changes: number }
  /** At the deadline (stopped: false) or stopped by the signal; `holders`: the last ones seen. */
  | {
      readonly quiet: false;
      readonly stopped: boolean;
      readonly holders: readonly Holder[];
      readonly busy: string;
      readonly changes: number;
    };

/** The state of one wait (see waitQuiet). */
class QuietWait {
  private events = 0;
  private changedWalks = 0;
  private holders: readonly Holder[] = [];
  private readonly watches: DirectoryWatches | undefined;

  constructor(
    private readonly dir: DirRef,
    private readonly opts: QuietOptions,
  ) {
    this.watches = opts.inotify === false ? undefined : new DirectoryWatches(`/proc/${process.pid}/fd/${dir.fd}`, () => void this.events++);
  }

  get changes(): number {
    return this.events + this.changedWalks;
  }

  close(): void {
    this.watches?.close();
  }

  /** A walk of the tree (undefined when it changed under the walk); the watches follow its directories. */
  async look(): Promise<QuietLook | undefined> {
    const dirs: string[] = [];
    let files = 0;
    const visit = (e: EntryInfo): void => {
      // One more than can be watched is enough to know that watches cannot cover the tree.
      if (e.type === 'dir') {
        if (dirs.length <= MAX_WATCHES) dirs.push(e.rel);
      } else if (e.type === 'file') files++;
    };
    const result = await treeDigest(this.dir, { signal: this.opts.signal, visit }).catch((e: unknown) => {
      if (!(e instanceof TreeChangedError)) return Promise.reject(e);
      this.opts.onUnsettled?.(e);
      return undefined;
    });
    if (result === undefined) return undefined;
    this.watches?.update(dirs);
    const look = { ...result, files };
    this.opts.onLook?.(look);
    return look;
  }

  /** Who holds the tree (a mount of it in any mount namespace, its owner's descriptors in flight too); told to onHolders. */
  async check(look: QuietLook | undefined, changed: boolean): Promise<number> {
    let holders: Holder[] = [];
    if (look !== undefined && this.opts.holders !== false) {
      const tree = await treeOf(this.dir.fd).catch(() => undefined);
      holders = await holdersOf(look.index, { trees: tree ? [tree] : [] });
    }
    this.holders = holders;
    this.opts.onHolders?.(holders, changed);
    return holders.length;
  }

  notQuiet(stopped: boolean): QuietResult {
    return { quiet: false, stopped, holders: this.holders, busy: describeHolders(this.holders), changes: this.changes };
  }

  /** The wait itself. */
  async run(): Promise<QuietResult> {
    const { quietMs, deadline, signal } = this.opts;
    let walkMs = Date.now();
    let last = await this.look();
    walkMs = Date.now() - walkMs;
    let lastWalk = Date.now();
    let since = Date.now();
    let seenEvents = this.events;
    // No quiet period asked for: the walk just made is the look; only holders can delay it.
    if (quietMs === 0 && last !== undefined && (await this.check(last, false)) === 0) return { quiet: true, changes: this.changes };
    for (;;) {
      if (signal.aborted) return this.notQuiet(true);
      const now = Date.now();
      const eventful = this.events !== seenEvents;
      if (eventful) since = now;
      const quietOver = last !== undefined && now - since >= quietMs;
      const due = now - lastWalk >= Math.max(1000, 2 * walkMs);
      // Walk again: to confirm at the end of the quiet period, after events (to watch new
      // directories and see whether it settled), when watches cannot be trusted, or as a fallback.
      const confirm = quietOver && (lastWalk < since + quietMs || due);
      if (confirm || (due && (eventful || this.watches?.complete !== true || last === undefined)) || now - lastWalk >= FULL_CHECK_MS) {
        seenEvents = this.events;
        const t = Date.now();
        const fresh = await this.look();
        walkMs = Date.now() - t;
        lastWalk = Date.now();
        // Without a quiet period a change does not matter, only a walk that could not finish.
        const changed = fresh === undefined || (quietMs > 0 && (last === undefined || fresh.digest !== last.digest));
        last = fresh;
        if (changed) {
          since = Date.now();
          this.changedWalks++;
          await this.check(fresh, true);
        } else if (quietMs === 0 || (quietOver && this.events === seenEvents)) {
          // Unchanged for the whole quiet period: and nobody holding anything in it?
          if ((await this.check(fresh, false)) === 0) return { quiet: true, changes: this.changes };
        }
      }
      if (Date.now() >= deadline) return this.notQuiet(false);
      this.opts.onTick?.(Math.max(0, Date.now() - since), this.changes);
      const untilQuiet = quietMs - (Date.now() - since);
      const pause = Math.max(10, Math.min(1000, untilQuiet > 0 ? untilQuiet : 1000, deadline - Date.now()));
      if (!(await sleep(pause, true, { signal }).catch(() => false))) return this.notQuiet(true);
    }
  }
}

/** Waits for the tree under `dir` to be quiet (see the top of this file). `dir` stays open. */
export async function waitQuiet(dir: DirRef, opts: QuietOptions): Promise<QuietResult> {
  const wait = new QuietWait(dir, opts);
  try {
    return await wait.run();
  } finally {
    wait.close();
  }
}
