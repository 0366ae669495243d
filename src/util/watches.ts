/**
 * inotify watches on the directories of a tree (one per directory, not per file: a change to
 * any entry is an event on its directory), kept in step with the directories a walk found.
 * At most MAX_WATCHES per tree (the kernel's per-user default limit is 8192 on older systems);
 * past that `complete` is false and callers must compare full walks instead of trusting events.
 * Events only ever make a caller look again: a watch that resolves somewhere unexpected (a
 * path its owner changed) costs a needless look, never a wrong decision.
 */
import { watch, type FSWatcher } from 'node:fs';
import { relToBuffer } from './safefs.js';

export const MAX_WATCHES = 4096;

export class DirectoryWatches {
  private readonly watches = new Map<string, FSWatcher>();
  private missed = false;

  constructor(
    /** The tree's top directory: a path, or /proc/<pid>/fd/<n> of a descriptor on it. */
    private readonly base: string,
    private readonly onChange: () => void,
    private readonly max = MAX_WATCHES,
  ) {}

  /** Whether every directory of the last update() is watched. */
  get complete(): boolean {
    return !this.missed;
  }

  /** Watches every directory in `rels` (latin1 paths relative to base) not yet watched; drops the others. */
  update(rels: readonly string[]): void {
    const wanted = new Set(rels);
    for (const [rel, w] of this.watches) {
      if (!wanted.has(rel)) {
        w.close();
        this.watches.delete(rel);
      }
    }
    this.missed = false;
    for (const rel of rels) {
      if (this.watches.has(rel)) continue;
      if (this.watches.size >= this.max) {
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
        this.missed = true;
        this.onChange();
      }
    }
  }

  close(): void {
    for (const w of this.watches.values()) w.close();
    this.watches.clear();
  }
}
