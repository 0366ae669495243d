/**
 * The daemon's queue: directories to convert, in the order they were seen, each at most once
 * (queued or running). Up to `maxJobs` jobs are in flight at once; that bound is about memory
 * and inotify watches, not about work: waiting jobs hold no work slot (see core/slots.ts), so a
 * burst of directories waits out its quiet period together and only the copies take turns.
 */
export interface QueueItem {
  readonly rootdir: string;
  readonly name: string;
}

export interface QueueOptions {
  /** Jobs in flight at most (read at every start: a reload may change it). */
  readonly maxJobs: () => number;
  /** Runs one job; never rejects (the queue logs nothing itself). */
  readonly run: (item: QueueItem) => Promise<void>;
  /** Once aborted, nothing new starts and add() refuses. */
  readonly signal: AbortSignal;
}

const keyOf = (item: QueueItem): string => `${item.rootdir}\0${item.name}`;

export class JobQueue {
  private readonly pending: QueueItem[] = [];
  private readonly keys = new Set<string>();
  private readonly inFlight = new Map<string, { item: QueueItem; done: Promise<void> }>();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly options: QueueOptions) {}

  /** Queues a directory unless it is queued or running already; false when it was not added. */
  add(rootdir: string, name: string): boolean {
    const item = { rootdir, name };
    const key = keyOf(item);
    if (this.options.signal.aborted || this.keys.has(key) || this.inFlight.has(key)) return false;
    this.keys.add(key);
    this.pending.push(item);
    this.pump();
    return true;
  }

  /** Queued, not yet started, in order. */
  get queued(): readonly QueueItem[] {
    return [...this.pending];
  }

  /** Started, not yet ended. */
  get running(): readonly QueueItem[] {
    return [...this.inFlight.values()].map((r) => r.item);
  }

  /** Drops everything not yet started (on stop). */
  clear(): void {
    this.pending.length = 0;
    this.keys.clear();
    this.changed();
  }

  /** Resolves once every job started so far has ended. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight.values()].map((r) => r.done));
  }

  /** Calls `listener` whenever a job is queued, starts or ends. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private pump(): void {
    while (!this.options.signal.aborted && this.inFlight.size < this.options.maxJobs() && this.pending.length > 0) {
      const item = this.pending.shift()!;
      const key = keyOf(item);
      this.keys.delete(key);
      const done = this.options
        .run(item)
        .catch(() => undefined)
        .finally(() => {
          this.inFlight.delete(key);
          this.pump();
        });
      this.inFlight.set(key, { item, done });
    }
    this.changed();
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}
