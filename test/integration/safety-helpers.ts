/** Shared checks for the safety tests: what a job may leave behind, and killing the CLI. */
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, cliEnv, datasets, type TestPool } from '../helpers/zfs.js';

/** Everything a finished or recovered job must not leave: helper dirs, journal files, locks, unfinished datasets. */
export async function leftovers(p: TestPool): Promise<string[]> {
  const hidden = (await readdir(p.mount)).filter((n) => n.startsWith('.zfs-dynamic-creator-'));
  const journal = await readdir(join(p.stateDir, 'jobs')).catch(() => [] as string[]);
  const locks = await readdir(join(p.stateDir, 'locks')).catch(() => [] as string[]);
  const unfinished = (await datasets(p.pool)).filter((d) => d.name !== p.pool && d.state !== 'live').map((d) => `dataset ${d.name} (${d.state})`);
  return [...hidden, ...journal.map((j) => `jobs/${j}`), ...locks.map((l) => `locks/${l}`), ...unfinished];
}

/** The staging mountpoint the zfs plugin uses for `name` (see plugins/zfs helperPath). */
export function stagingPath(p: TestPool, name: string, kind: 'staging' | 'orig' = 'staging'): string {
  return join(p.mount, `.zfs-dynamic-creator-${createHash('sha256').update(name).digest('hex').slice(0, 16)}.${kind}`);
}

/** Writes a config file of its own (so that several can coexist) and returns its path. */
export async function writeNamedConfig(p: TestPool, file: string, plugins: unknown[]): Promise<string> {
  const path = join(p.work, file);
  await writeFile(path, JSON.stringify({ stateDir: p.stateDir, lockStaleSeconds: 3, roots: [{ rootfs: p.pool, rootdir: p.mount, plugins }] }, null, 1));
  return path;
}

export interface RunResult {
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
}

/** Runs the CLI and reports how it ended, a death by signal included. */
export async function run(args: readonly string[], stateDir: string, timeoutMs = 170_000): Promise<RunResult> {
  const r = await execa(process.execPath, [CLI, ...args], { reject: false, env: cliEnv(stateDir), cwd: '/', stdin: 'ignore', timeout: timeoutMs });
  return { exitCode: r.exitCode, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Processes whose command line contains every one of `parts`. */
export async function processesMatching(...parts: string[]): Promise<number[]> {
  const found: number[] = [];
  for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const text = cmdline.replace(/\0/g, ' ');
    if (Number(pid) !== process.pid && parts.every((p) => text.includes(p))) found.push(Number(pid));
  }
  return found;
}
