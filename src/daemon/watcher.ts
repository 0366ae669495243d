/**
 * The daemon's watcher: inotify on each root (through chokidar, depth 0 only: the roots'
 * direct children, never the trees inside them). Every new directory is reported once; what a
 * watch misses (an event-queue overflow, the daemon down) the sweeper finds.
 */
import { basename, dirname } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { isHelperName } from '../core/index.js';
import { watchBudget } from '../util/watches.js';

export interface WatchTarget {
  readonly rootdir: string;
  /** Told when watching this root fails. */
  readonly onError: (error: unknown) => void;
}

export class RootWatcher {
  private watchers: FSWatcher[] = [];

  constructor(private readonly onDirectory: (rootdir: string, name: string) => void) {}

  /** (Re)starts watching exactly these roots; resolves once every watch is in place. */
  async watch(targets: readonly WatchTarget[]): Promise<void> {
    await this.close();
    const fresh = targets.map(({ rootdir, onError }) => {
      // One watch (the root itself, depth 0), counted in the process's budget whatever it says.
      watchBudget.force(1);
      const w = chokidar.watch(rootdir, { depth: 0, ignoreInitial: true, followSymlinks: false, persistent: true });
      w.on('addDir', (path: string) => {
        const name = basename(path);
        if (dirname(path) === rootdir && !isHelperName(name)) this.onDirectory(rootdir, name);
      });
      w.on('error', onError);
      return w;
    });
    this.watchers = fresh;
    await Promise.all(fresh.map((w) => new Promise<void>((resolve) => w.once('ready', () => resolve()))));
  }

  async close(): Promise<void> {
    const old = this.watchers;
    this.watchers = [];
    await Promise.all(old.map((w) => w.close().catch(() => undefined)));
    watchBudget.give(old.length);
  }
}
