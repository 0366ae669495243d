/**
 * The daemon's watcher: inotify on each root (through chokidar), on the root's direct children
 * only, never the trees inside them; with a layout (runs at depth N: src/core/levels.ts), on the
 * directories of the levels above the runs too (chokidar depth N-1), never inside a run, the
 * holding directory or .zfs. Every new run is reported once, by its name (with a layout its
 * relative path); what a watch misses (an event-queue overflow, the daemon down) the sweeper finds.
 */
import { relative, sep } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { isHelperName } from '../core/index.js';
import { watchBudget } from '../util/watches.js';

export interface WatchTarget {
  readonly rootdir: string;
  /** The depth of its runs (its layout's); 1: its direct children. */
  readonly depth?: number;
  /** Told when watching this root fails. */
  readonly onError: (error: unknown) => void;
}

export class RootWatcher {
  private watchers: { watcher: FSWatcher; watches: number }[] = [];

  constructor(private readonly onDirectory: (rootdir: string, name: string) => void) {}

  /** (Re)starts watching exactly these roots; resolves once every watch is in place. */
  async watch(targets: readonly WatchTarget[]): Promise<void> {
    await this.close();
    const fresh = targets.map((target) => this.watchRoot(target));
    this.watchers = fresh;
    await Promise.all(fresh.map(({ watcher }) => new Promise<void>((resolve) => watcher.once('ready', () => resolve()))));
  }

  private watchRoot({ rootdir, depth = 1, onError }: WatchTarget): { watcher: FSWatcher; watches: number } {
    const entry = { watcher: undefined as unknown as FSWatcher, watches: 1 };
    // The root's watch, and one per level directory, counted in the process's budget whatever it says.
    watchBudget.force(1);
    const parts = (path: string): string[] => relative(rootdir, path).split(sep);
    const ignored = (path: string): boolean => {
      const rel = parts(path);
      return path !== rootdir && (rel.length > depth || isHelperName(rel[0] ?? '') || rel[0] === '.zfs');
    };
    const w = chokidar.watch(rootdir, { depth: depth - 1, ignoreInitial: true, followSymlinks: false, persistent: true, ignored });
    w.on('addDir', (path: string) => {
      const rel = parts(path);
      if (path === rootdir || ignored(path)) return;
      if (rel.length === depth) this.onDirectory(rootdir, rel.join('/'));
      else {
        watchBudget.force(1);
        entry.watches += 1;
      }
    });
    w.on('unlinkDir', (path: string) => {
      if (path !== rootdir && parts(path).length < depth && entry.watches > 1) {
        watchBudget.give(1);
        entry.watches -= 1;
      }
    });
    w.once('ready', () => {
      // The level directories already there when the watch began (no addDir for them).
      const inside = Object.keys(w.getWatched()).filter((dir) => dir.startsWith(`${rootdir}/`) && parts(dir).length < depth);
      const levels = inside.length - (entry.watches - 1);
      if (depth > 1 && levels > 0) {
        watchBudget.force(levels);
        entry.watches += levels;
      }
    });
    w.on('error', onError);
    entry.watcher = w;
    return entry;
  }

  async close(): Promise<void> {
    const old = this.watchers;
    this.watchers = [];
    await Promise.all(old.map(({ watcher }) => watcher.close().catch(() => undefined)));
    watchBudget.give(old.reduce((n, { watches }) => n + watches, 0));
  }
}
