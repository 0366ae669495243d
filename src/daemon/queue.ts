/**
 * The daemon's queue (and a sweep's): directories to convert and interrupted jobs to finish,
 * each at most once (queued or running). Up to `maxJobs` jobs are in flight at once; that bound
 * is about memory and inotify watches, not about work: waiting jobs hold no work slot (see
 * core/slots.ts), so a burst of directories waits out its quiet period together and only the
 * copies take turns.
 *
 * Fair to every user: one owner (the uid of the directory) has at most `maxJobsPerOwner` jobs in
 * flight, and a free lane goes to the owner with jobs queued that has fewest in flight (in turn
 * among equals: round robin, not name order), so one user's held or busy directories can never
 * take every lane from the others.
 */
import { OwnerCounts, OwnerRing, UNKNOWN_OWNER } from '../core/slots.js';

export interface QueueItem {
  readonly rootdir: string;
  readonly name: string;
  /** The uid of the directory (UNKNOWN_OWNER when it could not be looked at). */
  readonly owner?: number;
  /** An interrupted job to finish or undo (listed from the journal, or found on disk), not a directory to convert. */
  readonly recover?: 'journal' | 'disk';
}

export interface QueueOptions {
  /** Jobs in flight at most (read at every start: a reload may change it). */
  readonly maxJobs: () => number;
  /** Jobs of one owner in flight at most (default: no limit but maxJobs). */
  readonly maxJobsPerOwner?: () => number;
  /** Runs one job; never rejects (the queue logs nothing itself). May name a job to queue after it. */
  readonly run: (item: QueueItem) => Promise<QueueItem | void>;
  /** Once aborted, nothing new starts and add() refuses. */
  readonly signal: AbortSignal;
}

const keyOf = (item: QueueItem): string => `${item.rootdir}\0${item.name}`;
const ownerOf = (item: QueueItem): number => item.owner ?? UNKNOWN_OWNER;

export class JobQueue {
  private readonly pending = new OwnerRing<QueueItem>();
  private readonly keys = new Set<string>();
  private readonly inFlight = new Map<string, { item: QueueItem; done: Promise<void> }>();
  private readonly perOwner = new OwnerCounts();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly options: QueueOptions) {}

  /** Queues a directory (or a job) unless it is queued or running already; false when it was not added. */
  add(rootdir: string, name: string, more: Omit<QueueItem, 'rootdir' | 'name'> = {}): boolean {
    const item: QueueItem = { rootdir, name, ...more };
    const key = keyOf(item);
    if (this.options.signal.aborted || this.keys.has(key) || this.inFlight.has(key)) return false;
    this.keys.add(key);
    this.pending.push(ownerOf(item), item);
    this.pump();
    return true;
  }

  /** Queued, not yet started, in the order they would start (owners in turn). */
  get queued(): readonly QueueItem[] {
    return this.pending.values();
  }

  /** Started, not yet ended. */
  get running(): readonly QueueItem[] {
    return [...this.inFlight.values()].map((r) => r.item);
  }

  /** Drops everything not yet started (on stop). */
  clear(): void {
    this.pending.clear();
    this.keys.clear();
    this.changed();
  }

  /** Resolves once every job started so far, and every one queued meanwhile, has ended. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight.values()].map((r) => r.done));
  }

  /** Calls `listener` whenever a job is queued, starts or ends. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private pump(): void {
    const cap = this.options.maxJobsPerOwner?.() ?? Infinity;
    while (!this.options.signal.aborted && this.inFlight.size < this.options.maxJobs()) {
      const next = this.pending.take(
        (owner) => this.perOwner.of(owner) < cap,
        (owner) => this.perOwner.of(owner),
      );
      if (!next) break;
      this.start(next.owner, next.item);
    }
    this.changed();
  }

  private start(owner: number, item: QueueItem): void {
    const key = keyOf(item);
    this.keys.delete(key);
    this.perOwner.add(owner, 1);
    const done = this.options
      .run(item)
      .catch(() => undefined)
      .then((after) => {
        this.inFlight.delete(key);
        this.perOwner.add(owner, -1);
        if (after) this.add(after.rootdir, after.name, after);
        this.pump();
      });
    this.inFlight.set(key, { item, done });
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}
