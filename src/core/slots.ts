/**
 * Work slots: at most `size` jobs do I/O at once (copy, catch-up, verification, removal,
 * filesystem commands). Waiting is not work: a job waiting for its directory to be quiet, or
 * for its grace period, holds no slot (job.waiting gives its slot back and takes one again).
 * One Slots is shared by every job of a process (the daemon's queue, a sweep, its recoveries).
 *
 * Fair to every user: a job belongs to an owner (the uid of its directory); one owner holds at
 * most `perOwner` slots, and a freed slot goes to the waiting owner that holds fewest (in turn
 * among equals), not to whoever asked first, so one user's many directories never keep
 * another's from its turn.
 */

/** The owner of a job whose directory could not be looked at. */
export const UNKNOWN_OWNER = -1;

/**
 * Entries waiting, grouped by owner: each owner's in the order they came, owners in turn (the
 * one served goes to the back of the line; one that may not be served now keeps its place).
 */
export class OwnerRing<T> {
  private readonly byOwner = new Map<number, T[]>();

  get size(): number {
    let n = 0;
    for (const list of this.byOwner.values()) n += list.length;
    return n;
  }

  push(owner: number, item: T): void {
    const list = this.byOwner.get(owner);
    if (list) list.push(item);
    else this.byOwner.set(owner, [item]);
  }

  /** Takes out `item` (the first entry equal to it); false when it is not there. */
  remove(owner: number, item: T): boolean {
    const list = this.byOwner.get(owner);
    const at = list ? list.indexOf(item) : -1;
    if (!list || at < 0) return false;
    list.splice(at, 1);
    if (list.length === 0) this.byOwner.delete(owner);
    return true;
  }

  /**
   * The next entry of the owner in line that `eligible` allows and that has the least `load` now
   * (what it already holds; the first in line among equals); that owner goes to the back.
   */
  take(eligible: (owner: number) => boolean, load: (owner: number) => number = () => 0): { owner: number; item: T } | undefined {
    let best: number | undefined;
    let least = Infinity;
    for (const owner of this.byOwner.keys()) {
      if (!eligible(owner)) continue;
      const l = load(owner);
      if (l < least) [best, least] = [owner, l];
    }
    if (best === undefined) return undefined;
    const list = this.byOwner.get(best)!;
    const item = list.shift()!;
    this.byOwner.delete(best);
    if (list.length > 0) this.byOwner.set(best, list);
    return { owner: best, item };
  }

  /** Every entry, owners in turn, the order they would be served in if nothing held them back. */
  values(): T[] {
    const lists = [...this.byOwner.values()].map((l) => [...l]);
    const out: T[] = [];
    for (let round = 0; lists.some((l) => round < l.length); round++) for (const l of lists) if (round < l.length) out.push(l[round]!);
    return out;
  }

  clear(): void {
    this.byOwner.clear();
  }
}

/** Counts per owner (slots held, jobs in flight). */
export class OwnerCounts {
  private readonly counts = new Map<number, number>();

  of(owner: number): number {
    return this.counts.get(owner) ?? 0;
  }

  add(owner: number, delta: number): void {
    const n = this.of(owner) + delta;
    if (n > 0) this.counts.set(owner, n);
    else this.counts.delete(owner);
  }
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class Slots {
  private held = 0;
  private readonly heldBy = new OwnerCounts();
  private readonly waiters = new OwnerRing<Waiter>();

  constructor(
    readonly size: number,
    /** Slots one owner may hold at once (at most size). */
    readonly perOwner: number = size,
  ) {
    if (!(size >= 1)) throw new RangeError(`a Slots needs a size of at least 1, not ${size}`);
    if (!(perOwner >= 1)) throw new RangeError(`a Slots needs at least 1 slot per owner, not ${perOwner}`);
  }

  /** Slots in use now. */
  get busy(): number {
    return this.held;
  }

  /** Jobs waiting for a slot now. */
  get queued(): number {
    return this.waiters.size;
  }

  /** Takes a slot for `owner`, waiting its turn; rejects with the signal's reason when it aborts first. */
  async acquire(signal?: AbortSignal, owner: number = UNKNOWN_OWNER): Promise<void> {
    signal?.throwIfAborted();
    // A free slot with waiters left means every waiter is at its owner's limit: no one is passed over.
    if (this.held < this.size && this.heldBy.of(owner) < this.perOwner) {
      this.grant(owner);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const entry: Waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      const onAbort = (): void => {
        if (this.waiters.remove(owner, entry)) reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(owner, entry);
    });
  }

  /** Gives `owner`'s slot back: the owners waiting get the free slots in turn. */
  release(owner: number = UNKNOWN_OWNER): void {
    if (this.held === 0) return;
    this.held--;
    this.heldBy.add(owner, -1);
    for (;;) {
      if (this.held >= this.size) return;
      const next = this.waiters.take(
        (o) => this.heldBy.of(o) < this.perOwner,
        (o) => this.heldBy.of(o),
      );
      if (!next) return;
      this.grant(next.owner);
      next.item.resolve();
    }
  }

  private grant(owner: number): void {
    this.held++;
    this.heldBy.add(owner, 1);
  }
}

/** A job's hold on one slot of a Slots: taken and given back, never twice. */
export class SlotHold {
  private holding: number | undefined;

  constructor(
    private readonly slots: Slots | undefined,
    /** Whose job this is (the uid of its directory), for the per-owner limit and the turns. */
    public owner: number = UNKNOWN_OWNER,
  ) {}

  get held(): boolean {
    return this.holding !== undefined;
  }

  async take(signal?: AbortSignal): Promise<void> {
    if (this.holding !== undefined || !this.slots) return;
    const owner = this.owner;
    await this.slots.acquire(signal, owner);
    this.holding = owner;
  }

  give(): void {
    if (this.holding === undefined || !this.slots) return;
    const owner = this.holding;
    this.holding = undefined;
    this.slots.release(owner);
  }
}
