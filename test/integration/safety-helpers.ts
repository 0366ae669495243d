/** Shared checks for the safety tests: what a job may leave behind, and killing the CLI. */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, cliEnv, type TestPool } from '../helpers/zfs.js';

export { leftovers } from '../helpers/state.js';
/** The staging mountpoint (or, with 'orig', the moved-aside original) of the job for `name`. */
export { helperPath as stagingPath } from '../helpers/state.js';

/** Writes a config file of its own (so that several can coexist) and returns its path. */
export async function writeNamedConfig(p: TestPool, file: string, plugins: unknown[]): Promise<string> {
  const path = join(p.work, file);
  await writeFile(path, JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: p.mount, plugins }] }, null, 1));
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
  const r = await execa(process.execPath, [CLI, ...args], {
    reject: false,
    env: cliEnv(stateDir),
    cwd: '/',
    stdin: 'ignore',
    timeout: timeoutMs,
  });
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
