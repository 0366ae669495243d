/**
 * What the daemon is doing, for `status`: written atomically to <stateDir>/daemon.json while it
 * runs (whenever its queue changes, at most every second, and every 5 s while jobs are in
 * flight), removed when it stops. Read only when its process is still alive.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, type ActiveJob } from '../core/index.js';

export interface DaemonStatus {
  readonly version: 1;
  readonly pid: number;
  readonly startedAt: string;
  readonly updatedAt: string;
  /** Work slots: in use and in all, and how many jobs wait for one. */
  readonly slots: { readonly busy: number; readonly size: number; readonly queued: number };
  readonly maxJobs: number;
  /** Seen, not yet started (in order). */
  readonly queued: readonly { readonly rootdir: string; readonly name: string }[];
  /** Started: what each does or waits for. */
  readonly active: readonly (ActiveJob & { readonly rootdir: string })[];
}

export const daemonStatusFile = (stateDir: string): string => join(stateDir, 'daemon.json');

export async function writeDaemonStatus(stateDir: string, status: DaemonStatus): Promise<void> {
  await writeFileAtomic(daemonStatusFile(stateDir), `${JSON.stringify(status, null, 1)}\n`);
}

export async function removeDaemonStatus(stateDir: string, pid: number): Promise<void> {
  const current = await readDaemonStatus(stateDir, { evenIfGone: true });
  if (current?.pid === pid) await rm(daemonStatusFile(stateDir), { force: true });
}

/** The running daemon's status, or undefined when none runs (a file left by a dead one is ignored). */
export async function readDaemonStatus(stateDir: string, options: { evenIfGone?: boolean } = {}): Promise<DaemonStatus | undefined> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(daemonStatusFile(stateDir), 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as { version?: unknown }).version !== 1) return undefined;
  const status = parsed as DaemonStatus;
  if (!Number.isInteger(status.pid) || status.pid <= 0) return undefined;
  if (!options.evenIfGone && !alive(status.pid)) return undefined;
  return status;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
