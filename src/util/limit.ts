/** At most `limit` async tasks at once; the rest wait in order. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }

  /**
   * Runs `fn` over `items` through this limiter, from at most `limit` workers (no promise per item,
   * however many there are): stops taking items at the first error, or once `stopped()` says so,
   * waits for those started, and throws the first error.
   */
  async forEach<T>(
    items: readonly T[],
    fn: (item: T, index: number) => Promise<void>,
    stopped: () => boolean = () => false,
  ): Promise<void> {
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (next < items.length && !failed && !stopped()) {
        const i = next++;
        try {
          await this.run(() => fn(items[i]!, i));
        } catch (error) {
          failed = true;
          throw error;
        }
      }
    };
    const workers: Promise<void>[] = [];
    for (let k = 0; k < Math.min(this.limit, items.length); k++) workers.push(worker());
    const results = await Promise.allSettled(workers);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }
}
