/**
 * inotify watches on the directories of a tree (one per directory, not per file: a change to
 * any entry is an event on its directory), kept in step with the directories a walk found.
 * At most MAX_WATCHES per tree, and all of a process's watches (every tree's, the daemon's on
 * its roots) within one budget: a share of the watches the system's limit
 * (/proc/sys/fs/inotify/max_user_watches, per user) leaves free, so that incrond and the others
 * keep theirs. Past either, `complete` is false and callers must compare full walks instead of
 * trusting events. Events only ever make a caller look again: a watch that resolves somewhere
 * unexpected (a path its owner changed) costs a needless look, never a wrong decision.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir, readlink, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { relToBuffer } from './safefs/index.js';

export const MAX_WATCHES = 4096;

/** How often the watches other processes of this user hold are counted again. */
const RECOUNT_MS = 60_000;

/** inotify watches held by other processes of this user (their /proc/<pid>/fdinfo), this one left out. */
export async function watchesInUse(procRoot = '/proc'): Promise<number> {
  const uid = process.getuid?.() ?? 0;
  let total = 0;
  for (const pid of await readdir(procRoot).catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const owner = await stat(`${procRoot}/${pid}`).catch(() => undefined);
    if (owner?.uid !== uid) continue;
    for (const fd of await readdir(`${procRoot}/${pid}/fd`).catch(() => [] as string[])) {
      if ((await readlink(`${procRoot}/${pid}/fd/${fd}`).catch(() => '')) !== 'anon_inode:inotify') continue;
      const info = await readFile(`${procRoot}/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
      total += info.split('\n').filter((l) => l.startsWith('inotify wd:')).length;
    }
  }
  return total;
}

/** The system's per-user limit on inotify watches, or undefined when it cannot be read. */
function systemLimit(): number | undefined {
  try {
    const n = Number(readFileSync('/proc/sys/fs/inotify/max_user_watches', 'utf8').trim());
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One process's share of the inotify watches: `share` of what the system's limit leaves once the
 * other processes of this user have theirs (counted at most every minute, in the background).
 */
export class WatchBudget {
  private used = 0;
  private others = 0;
  private countedAt = 0;
  private counting: Promise<void> | undefined;

  constructor(
    private share = 0.5,
    private readonly limit: () => number | undefined = systemLimit,
    private readonly inUse: () => Promise<number> = () => watchesInUse(),
  ) {}

  /** Watches this process may hold now (all of them, its own included). */
  get size(): number {
    const limit = this.limit();
    return limit === undefined ? MAX_WATCHES : Math.max(0, Math.floor(this.share * (limit - this.others)));
  }

  /** Watches this process holds now. */
  get inUseHere(): number {
    return this.used;
  }

  /** Sets the share (the config's watch.inotifyShare); the others' watches are counted at the first take. */
  configure(share: number): void {
    this.share = share;
  }

  /** Counts the other processes' watches again; never rejects. */
  recount(): Promise<void> {
    this.counting ??= this.inUse()
      .then((n) => void (this.others = n))
      .catch(() => undefined)
      .finally(() => {
        this.countedAt = Date.now();
        this.counting = undefined;
      });
    return this.counting;
  }

  /** Takes `n` watches of the budget; false (nothing taken) when they would go past it. */
  take(n = 1): boolean {
    if (Date.now() - this.countedAt > RECOUNT_MS) void this.recount();
    if (this.used + n > this.size) return false;
    this.used += n;
    return true;
  }

  /** Counts `n` watches this process cannot do without (the daemon's on its roots), budget or not. */
  force(n = 1): void {
    this.used += n;
  }

  give(n = 1): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** The budget every watch of this process draws on. */
export const watchBudget = new WatchBudget();

export class DirectoryWatches {
  private readonly watches = new Map<string, FSWatcher>();
  private missed = false;

  constructor(
    /** The tree's top directory: a path, or /proc/<pid>/fd/<n> of a descriptor on it. */
    private readonly base: string,
    private readonly onChange: () => void,
    private readonly max = MAX_WATCHES,
    private readonly budget: WatchBudget = watchBudget,
  ) {}

  /** Whether every directory of the last update() is watched. */
  get complete(): boolean {
    return !this.missed;
  }

  /** Watches every directory in `rels` (latin1 paths relative to base) not yet watched; drops the others. */
  update(rels: readonly string[]): void {
    const wanted = new Set(rels);
    for (const [rel, w] of this.watches) {
      if (!wanted.has(rel)) this.drop(rel, w);
    }
    this.missed = false;
    for (const rel of rels) {
      if (this.watches.has(rel)) continue;
      if (this.watches.size >= this.max || !this.budget.take(1)) {
        this.missed = true;
        break;
      }
      const path = rel === '' ? Buffer.from(this.base) : Buffer.concat([Buffer.from(`${this.base}/`), relToBuffer(rel)]);
      try {
        const w = watch(path, { persistent: false, encoding: 'buffer' }, () => this.onChange());
        w.on('error', () => {
          this.missed = true;
          this.onChange();
        });
        this.watches.set(rel, w);
      } catch {
        // Gone meanwhile, or out of watches: a full comparison covers it.
        this.budget.give(1);
        this.missed = true;
        this.onChange();
      }
    }
  }

  close(): void {
    for (const [rel, w] of this.watches) this.drop(rel, w);
  }

  private drop(rel: string, w: FSWatcher): void {
    w.close();
    this.watches.delete(rel);
    this.budget.give(1);
  }
}
