/** The one concurrency limiter (src/util/limit.ts): run() and forEach() over a list. */
import { describe, expect, it } from 'vitest';
import { Limiter } from '../../src/index.js';

/** A task that stays running until released, counting how many run at once. */
function gate(): { task: () => Promise<void>; release: () => void; most: () => number } {
  let running = 0;
  let most = 0;
  let open: () => void = () => undefined;
  let opened = new Promise<void>((resolve) => (open = resolve));
  return {
    task: async () => {
      running++;
      most = Math.max(most, running);
      await opened;
      running--;
    },
    release: () => {
      open();
      opened = new Promise<void>((resolve) => (open = resolve));
    },
    most: () => most,
  };
}

describe('Limiter', () => {
  it('runs at most its limit at once, the rest in order', async () => {
    const limiter = new Limiter(2);
    const g = gate();
    const started: number[] = [];
    const all = Promise.all([0, 1, 2, 3, 4].map((i) => limiter.run(async () => (started.push(i), g.task()))));
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual([0, 1]);
    for (let i = 0; i < 3; i++) {
      g.release();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await all;
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(g.most()).toBe(2);
  });

  it('forEach: every item once, at most the limit at once, with its index', async () => {
    const limiter = new Limiter(3);
    const seen: [string, number][] = [];
    let running = 0;
    let most = 0;
    await limiter.forEach(['a', 'b', 'c', 'd', 'e', 'f', 'g'], async (item, index) => {
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setImmediate(resolve));
      seen.push([item, index]);
      running--;
    });
    expect(seen.sort()).toEqual([
      ['a', 0],
      ['b', 1],
      ['c', 2],
      ['d', 3],
      ['e', 4],
      ['f', 5],
      ['g', 6],
    ]);
    expect(most).toBe(3);
  });

  it('forEach: stops taking items at the first error, waits for those started, throws that error', async () => {
    const limiter = new Limiter(2);
    const done: number[] = [];
    const items = Array.from({ length: 100 }, (_, i) => i);
    const failure = new Error('item 3');
    await expect(
      limiter.forEach(items, async (i) => {
        await new Promise((resolve) => setImmediate(resolve));
        if (i === 3) throw failure;
        done.push(i);
      }),
    ).rejects.toBe(failure);
    expect(done.length).toBeLessThan(10);
    expect(done).toContain(2);
  });

  it('forEach: takes no more items once stopped() says so', async () => {
    const limiter = new Limiter(4);
    const done: number[] = [];
    await limiter.forEach(
      Array.from({ length: 50 }, (_, i) => i),
      async (i) => void done.push(i),
      () => done.length >= 5,
    );
    expect(done.length).toBeGreaterThanOrEqual(5);
    expect(done.length).toBeLessThan(9);
  });
});
