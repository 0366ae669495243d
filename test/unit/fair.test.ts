/** Fair to every user (issue 19): turns between owners, per-owner limits, the inotify budget. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { OwnerRing, SlotHold, Slots } from '../../src/core/slots.js';
import { validateConfig } from '../../src/core/config.js';
import { JobQueue, type QueueItem } from '../../src/daemon/queue.js';
import { DirectoryWatches, WatchBudget, watchesInUse } from '../../src/util/watches.js';

describe('OwnerRing', () => {
  it('serves owners in turn, each owner in order; a held-back owner keeps its place', () => {
    const ring = new OwnerRing<string>();
    for (const x of ['a1', 'a2', 'a3']) ring.push(1, x);
    ring.push(2, 'b1');
    ring.push(3, 'c1');
    ring.push(2, 'b2');
    expect(ring.values()).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
    const taken: string[] = [];
    for (let next = ring.take(() => true); next; next = ring.take(() => true)) taken.push(next.item);
    expect(taken).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
    ring.push(1, 'a');
    ring.push(2, 'b');
    expect(ring.take((o) => o !== 1)?.item).toBe('b');
    expect(ring.remove(1, 'a')).toBe(true);
    expect(ring.size).toBe(0);
  });
});

describe('Slots per owner', () => {
  it('one owner holds at most perOwner slots; a freed slot goes to the owners waiting in turn', async () => {
    const slots = new Slots(2, 1);
    await slots.acquire(undefined, 1);
    const order: string[] = [];
    const a2 = slots.acquire(undefined, 1).then(() => order.push('a2'));
    const a3 = slots.acquire(undefined, 1).then(() => order.push('a3'));
    // The second slot is free, but not for owner 1: another owner takes it at once.
    await slots.acquire(undefined, 2);
    expect(slots.busy).toBe(2);
    void slots.acquire(undefined, 2).then(() => order.push('b2'));
    const c1 = slots.acquire(undefined, 3).then(() => order.push('c1'));
    await sleep(5);
    expect(order).toEqual([]);
    slots.release(1); // owner 1 waited first: its turn
    await a2;
    slots.release(2); // owners 2 and 3 hold none now: 2 is first in line
    await sleep(5);
    expect(order).toEqual(['a2', 'b2']);
    slots.release(1);
    await c1;
    expect(order).toEqual(['a2', 'b2', 'c1']);
    slots.release(2);
    await a3;
    expect(order).toEqual(['a2', 'b2', 'c1', 'a3']);
  });

  it('a SlotHold takes and gives back its owner’s slot', async () => {
    const slots = new Slots(2, 1);
    const a = new SlotHold(slots, 7);
    const b = new SlotHold(slots, 7);
    await a.take();
    let got = false;
    const pending = b.take().then(() => (got = true));
    await sleep(5);
    expect(got).toBe(false);
    a.give();
    await pending;
    expect(b.held).toBe(true);
    expect(() => new Slots(1, 0)).toThrow(RangeError);
  });
});

describe('JobQueue per owner', () => {
  it('one owner with 64 held directories (names first) leaves lanes to another, who starts at once', async () => {
    const stop = new AbortController();
    const started: string[] = [];
    const release = new Map<string, () => void>();
    const queue = new JobQueue({
      maxJobs: () => 8,
      maxJobsPerOwner: () => 6,
      signal: stop.signal,
      run: (item: QueueItem) => {
        started.push(item.name);
        return new Promise<void>((resolve) => release.set(item.name, resolve));
      },
    });
    for (let i = 0; i < 64; i++) queue.add('/r', `a${String(i).padStart(2, '0')}`, { owner: 1000 });
    expect(started).toHaveLength(6);
    expect(queue.add('/r', 'z-other', { owner: 2000 })).toBe(true);
    expect(started).toContain('z-other');
    queue.add('/r', 'z-third', { owner: 3000 });
    expect(started).toContain('z-third');
    // Full now: the next lane freed goes to the owner whose turn it is, not to name order.
    queue.add('/r', 'z-other2', { owner: 2000 });
    release.get('a00')!();
    await sleep(5);
    expect(started.at(-1)).toBe('z-other2');
    stop.abort();
    for (const r of release.values()) r();
    await queue.drain();
  });

  it('a job can queue another after it (a rolled-back job converted next)', async () => {
    const stop = new AbortController();
    const seen: string[] = [];
    const queue = new JobQueue({
      maxJobs: () => 1,
      signal: stop.signal,
      run: async (item) => {
        seen.push(`${item.recover ? 'recover' : 'convert'} ${item.name}`);
        return item.recover ? { rootdir: item.rootdir, name: item.name } : undefined;
      },
    });
    queue.add('/r', 'x', { recover: 'journal' });
    await queue.drain();
    expect(seen).toEqual(['recover x', 'convert x']);
  });
});

describe('the watch budget', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('is a share of what the system limit leaves the other processes', async () => {
    const budget = new WatchBudget(
      0.5,
      () => 1000,
      async () => 400,
    );
    expect(budget.size).toBe(500); // before the others are counted
    await budget.recount();
    expect(budget.size).toBe(300);
    expect(budget.take(250)).toBe(true);
    expect(budget.take(100)).toBe(false);
    budget.force(100);
    expect(budget.inUseHere).toBe(350);
    budget.give(350);
    expect(budget.inUseHere).toBe(0);
  });

  it('DirectoryWatches past the budget: incomplete (callers walk instead), and the watches given back on close', async () => {
    const base = await mkdtemp(join(tmpdir(), 'zdc-budget-'));
    dirs.push(base);
    for (const d of ['a', 'b', 'c', 'd']) await mkdir(join(base, d));
    const budget = new WatchBudget(
      1,
      () => 3,
      async () => 0,
    );
    await budget.recount();
    const one = new DirectoryWatches(base, () => undefined, 4096, budget);
    one.update(['', 'a']);
    expect(one.complete).toBe(true);
    const two = new DirectoryWatches(base, () => undefined, 4096, budget);
    two.update(['b', 'c']);
    expect(two.complete).toBe(false);
    expect(budget.inUseHere).toBe(3);
    one.close();
    two.update(['b', 'c']);
    expect(two.complete).toBe(true);
    two.close();
    expect(budget.inUseHere).toBe(0);
  });

  it('counts the inotify watches other processes of this user hold', async () => {
    expect(await watchesInUse()).toBeGreaterThanOrEqual(0);
  });
});

describe('config', () => {
  it('per-owner limits default to a share of the totals, each at most its total', () => {
    const c = validateConfig({ roots: [{ rootfs: 'tank/r', rootdir: '/tank/r' }] }, 'test', []);
    expect(c.watch).toMatchObject({ concurrency: 2, concurrencyPerOwner: 2, maxJobs: 64, maxJobsPerOwner: 48, inotifyShare: 0.5 });
    const d = validateConfig(
      {
        watch: { concurrency: 4, concurrencyPerOwner: 9, maxJobs: 3, maxJobsPerOwner: 2 },
        roots: [{ rootfs: 'tank/r', rootdir: '/tank/r' }],
      },
      'test',
      [],
    );
    expect(d.watch).toMatchObject({ concurrencyPerOwner: 4, maxJobsPerOwner: 2 });
    expect(
      validateConfig({ watch: { maxJobs: 1 }, roots: [{ rootfs: 'tank/r', rootdir: '/tank/r' }] }, 'test', []).watch.maxJobsPerOwner,
    ).toBe(1);
  });
});
