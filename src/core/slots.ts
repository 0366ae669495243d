/**
 * Work slots: at most `size` jobs do I/O at once (copy, catch-up, verification, removal,
 * filesystem commands). Waiting is not work: a job waiting for its directory to be quiet, or
 * for its grace period, holds no slot (job.waiting gives its slot back and takes one again).
 * One Slots is shared by every job of a process (the daemon's queue, a sweep, its recoveries).
 */
export class Slots {
  private held = 0;
  private readonly queue: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new RangeError(`a Slots needs a size of at least 1, not ${size}`);
  }

  /** Slots in use now. */
  get busy(): number {
    return this.held;
  }

  /** Jobs waiting for a slot now. */
  get queued(): number {
    return this.queue.length;
  }

  /** Takes a slot, waiting in order for one; rejects with the signal's reason when it aborts first. */
  async acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.held < this.size) {
      this.held++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const entry = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      const onAbort = (): void => {
        const at = this.queue.indexOf(entry);
        if (at >= 0) this.queue.splice(at, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(entry);
    });
  }

  /** Gives a slot back: the next in line gets it. */
  release(): void {
    const next = this.queue.shift();
    if (next) next.resolve();
    else if (this.held > 0) this.held--;
  }
}

/** A job's hold on one slot of a Slots: taken and given back, never twice. */
export class SlotHold {
  private holding = false;

  constructor(private readonly slots: Slots | undefined) {}

  get held(): boolean {
    return this.holding;
  }

  async take(signal?: AbortSignal): Promise<void> {
    if (this.holding || !this.slots) return;
    await this.slots.acquire(signal);
    this.holding = true;
  }

  give(): void {
    if (!this.holding || !this.slots) return;
    this.holding = false;
    this.slots.release();
  }
}
