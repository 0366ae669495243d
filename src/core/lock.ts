/**
 * One job per directory at a time, across processes (incron starts one per
 * event; the daemon and reconcile run jobs too). proper-lockfile keeps the lock
 * fresh while we hold it, so a lock left by a killed process goes stale and can
 * be taken over after `staleMs`.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { BusyError } from './errors.js';

export interface Lock {
  release(): Promise<void>;
  /** Set when the lock was lost (for example: its directory removed); the holder must stop. */
  readonly compromised: Error | undefined;
}

export interface LockOptions {
  staleMs: number;
  /** How long to keep trying before answering busy. */
  waitMs?: number;
}

export async function acquireLock(stateDir: string, id: string, options: LockOptions): Promise<Lock> {
  const dir = join(stateDir, 'locks');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, id);
  let compromised: Error | undefined;
  const waitMs = options.waitMs ?? 0;
  const retries = waitMs > 0 ? { retries: Math.max(1, Math.ceil(waitMs / 250)), minTimeout: 250, maxTimeout: 250, factor: 1 } : 0;
  try {
    const release = await lockfile.lock(path, {
      realpath: false,
      stale: options.staleMs,
      update: Math.max(1000, Math.floor(options.staleMs / 3)),
      retries,
      onCompromised: (error) => {
        compromised = error;
      },
    });
    return {
      release: async () => {
        try {
          await release();
        } catch {
          // already released or compromised: nothing more to do
        }
      },
      get compromised() {
        return compromised;
      },
    };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new BusyError('another zfs-dynamic-creator process is handling this directory');
    }
    throw error;
  }
}

/** Whether a job's lock is held now (by a live process). */
export async function isLocked(stateDir: string, id: string, staleMs: number): Promise<boolean> {
  try {
    return await lockfile.check(join(stateDir, 'locks', id), { realpath: false, stale: staleMs });
  } catch {
    return false;
  }
}
