/** Retry with exponential backoff, for failures that pass (a busy dataset, a vanished file). */
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Delay before the second attempt; doubles each time. */
  firstDelayMs: number;
  maxDelayMs?: number;
  /** Whether an error is worth another attempt. */
  transient: (error: unknown) => boolean;
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
}

export async function retry<T>(action: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  let delay = options.firstDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await action(attempt);
    } catch (error) {
      if (attempt >= options.attempts || !options.transient(error) || options.signal?.aborted) throw error;
      options.onRetry?.(error, attempt, delay);
      await sleep(delay);
      delay = Math.min(delay * 2, options.maxDelayMs ?? 30_000);
    }
  }
}
