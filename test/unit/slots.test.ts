/** Work slots and the daemon's queue: pure logic, no I/O. */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { SlotHold, Slots } from '../../src/core/slots.js';
import { JobQueue, type QueueItem } from '../../src/daemon/queue.js';

describe('Slots', () => {
  it('gives out at most size slots, then serves waiters in order', async () => {
    const slots = new Slots(2);
    await slots.acquire();
    await slots.acquire();
    expect(slots.busy).toBe(2);
    const order: number[] = [];
    const a = slots.acquire().then(() => order.push(1));
    const b = slots.acquire().then(() => order.push(2));
    await sleep(5);
    expect(order).toEqual([]);
    expect(slots.queued).toBe(2);
    slots.release();
    await a;
    expect(order).toEqual([1]);
    slots.release();
    await b;
    expect(order).toEqual([1, 2]);
    expect(slots.busy).toBe(2);
    slots.release();
    slots.release();
    expect(slots.busy).toBe(0);
  });

  it('an abort while waiting rejects and leaves the line without taking a slot', async () => {
    const slots = new Slots(1);
    await slots.acquire();
    const stop = new AbortController();
    const waiting = slots.acquire(stop.signal);
    stop.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    expect(slots.queued).toBe(0);
    slots.release();
    expect(slots.busy).toBe(0);
    await expect(slots.acquire(stop.signal)).rejects.toThrow('stop');
  });

  it('a SlotHold takes and gives at most one slot, however often it is asked', async () => {
    const slots = new Slots(1);
    const hold = new SlotHold(slots);
    await hold.take();
    await hold.take();
    expect(slots.busy).toBe(1);
    hold.give();
    hold.give();
    expect(slots.busy).toBe(0);
    expect(() => new Slots(0)).toThrow(RangeError);
  });
});

describe('JobQueue', () => {
  it('runs up to maxJobs at once, each directory once while queued or running, in order', async () => {
    const stop = new AbortController();
    const started: string[] = [];
    const release = new Map<string, () => void>();
    const queue = new JobQueue({
      maxJobs: () => 2,
      signal: stop.signal,
      run: (item: QueueItem) => {
        started.push(item.name);
        return new Promise<void>((resolve) => release.set(item.name, resolve));
      },
    });
    expect(queue.add('/r', 'a')).toBe(true);
    expect(queue.add('/r', 'b')).toBe(true);
    expect(queue.add('/r', 'c')).toBe(true);
    expect(queue.add('/r', 'a')).toBe(false); // running
    expect(queue.add('/r', 'c')).toBe(false); // queued
    expect(queue.add('/other', 'c')).toBe(true); // another root
    expect(started).toEqual(['a', 'b']);
    expect(queue.queued.map((i) => `${i.rootdir}/${i.name}`)).toEqual(['/r/c', '/other/c']);
    release.get('a')!();
    await sleep(5);
    expect(started).toEqual(['a', 'b', 'c']);
    expect(queue.add('/r', 'a')).toBe(true); // ended: may come again
    stop.abort();
    queue.clear();
    expect(queue.add('/r', 'z')).toBe(false);
    for (const r of release.values()) r();
    release.get('c')!();
    await sleep(5);
    for (const r of release.values()) r();
    await queue.drain();
    expect(queue.running).toEqual([]);
    expect(started).not.toContain('z');
  });
});
