/**
 * What the daemon is doing, for `status`: written atomically to <stateDir>/daemon.json while it
 * runs (whenever its queue changes, at most every second, every second while jobs are in
 * flight, and every 5 s at least: its updatedAt is a heartbeat), removed when it stops. A file
 * whose process is gone or that was not written for STALE_MS is a dead daemon's.
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

/** A status file older than this (the daemon writes it every 5 s at least) is a dead daemon's. */
export const STALE_MS = 60_000;

/**
 * The daemon as its status file tells it: running (its pid lives and the file is fresh), gone
 * (the file of a daemon that died without removing it: SIGKILL, a crash, a reboot, a hang), or
 * undefined when no daemon left a file (never started, or stopped cleanly).
 */
export async function daemonLiveness(
  stateDir: string,
  now: number = Date.now(),
): Promise<{ running: DaemonStatus } | { gone: DaemonStatus } | undefined> {
  const status = await readDaemonStatus(stateDir, { evenIfGone: true });
  if (status === undefined) return undefined;
  const fresh = now - Date.parse(status.updatedAt) < STALE_MS;
  return alive(status.pid) && fresh ? { running: status } : { gone: status };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
