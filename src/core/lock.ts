/**
 * One job per directory at a time, across processes (incron starts one per event; the daemon,
 * reconcile and recover run jobs too).
 *
 * A lock is a kernel flock(2) on an open file under <stateDir>/locks. The kernel drops it when the
 * holding process dies (SIGKILL, OOM, reboot) and never otherwise: a lock can never go "stale"
 * and be taken from a process that still exists, however long it has been stopped or quiet. Node
 * has no flock binding, so util-linux's flock(1) takes the lock on our open file description
 * (passed as fd 3) and exits; the lock belongs to the description, which this process keeps open.
 *
 * The file is unlinked on release while still locked; a process that locks a file must then
 * check that the path still names the file it locked (the usual lock-then-verify pattern), so a
 * lock file removed by hand is noticed: `check()` fails and the holder stops before its next step.
 */
import { lstat, mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { BusyError } from './errors.js';

export interface Lock {
  /** Throws when the lock is no longer ours (its file was removed or replaced): stop before acting. */
  check(): Promise<void>;
  release(): Promise<void>;
}

export interface LockOptions {
  /** How long to keep trying before answering busy (default: not at all). */
  readonly waitMs?: number;
  /** Said in the BusyError. */
  readonly busyMessage?: string;
  /** @deprecated ignored: a kernel lock never goes stale, it ends with its process. */
  readonly staleMs?: number;
}

const LOCKED = 75;

async function tryFlock(handle: FileHandle): Promise<boolean> {
  // execa passes a file descriptor number through as the child's fd 3 (Node's stdio semantics);
  // its types only list numbers for fds 0-2, hence the cast.
  const shared = handle.fd as unknown as 'inherit';
  const { execa } = await import('execa');
  const r = await execa('flock', ['--nonblock', '--conflict-exit-code', String(LOCKED), '3'], {
    stdio: ['ignore', 'ignore', 'pipe', shared],
    reject: false,
  });
  if (r.exitCode === 0) return true;
  if (r.exitCode === LOCKED) return false;
  throw new Error(`flock failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
}

async function sameFile(handle: FileHandle, path: string): Promise<boolean> {
  const [mine, there] = await Promise.all([handle.stat(), lstat(path).catch(() => undefined)]);
  return there !== undefined && there.ino === mine.ino && there.dev === mine.dev;
}

export function lockPath(stateDir: string, id: string): string {
  return join(stateDir, 'locks', id);
}

export async function acquireLock(stateDir: string, id: string, options: LockOptions = {}): Promise<Lock> {
  const dir = join(stateDir, 'locks');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = lockPath(stateDir, id);
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (;;) {
    const handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    let locked = false;
    try {
      locked = await tryFlock(handle);
      if (locked && (await sameFile(handle, path))) {
        await handle.truncate(0);
        await handle.write(`${JSON.stringify({ pid: process.pid, at: new Date().toISOString() })}\n`, 0);
        return held(handle, path);
      }
    } catch (error) {
      await handle.close();
      throw error;
    }
    // Not locked, or locked a file that its holder had just removed: let go and try again.
    await handle.close();
    if (locked) continue;
    if (Date.now() >= deadline)
      throw new BusyError(options.busyMessage ?? 'another zfs-dynamic-creator process is handling this directory');
    await sleep(Math.min(250, Math.max(10, deadline - Date.now())));
  }
}

function held(handle: FileHandle, path: string): Lock {
  let released = false;
  return {
    async check() {
      if (released) throw new Error('the lock on this directory was already released');
      if (!(await sameFile(handle, path))) {
        throw new Error(`the lock file ${path} was removed or replaced while this process held it; stopping before the next step`);
      }
    },
    async release() {
      if (released) return;
      released = true;
      try {
        if (await sameFile(handle, path)) await unlink(path);
      } catch {
        // gone already: nothing to do
      } finally {
        await handle.close().catch(() => undefined);
      }
    },
  };
}

/** Whether a job's lock is held now, by any live process. */
export async function isLocked(stateDir: string, id: string): Promise<boolean> {
  const path = lockPath(stateDir, id);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return false;
  }
  try {
    return !(await tryFlock(handle));
  } finally {
    await handle.close();
  }
}
