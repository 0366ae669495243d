/**
 * Real ZFS for tests: a throwaway pool on a file (zfs-fuse here, the kernel's
 * OpenZFS where there is one). No ZFS means a failed test, never a skipped one.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { onTestFinished } from 'vitest';
import { scaled } from './time.js';
import { createThrowawayPool, destroyThrowawayPool, poolFiles } from './pool.js';
import { PROP_STATE } from '../../plugins/zfs/zfs.js';

export const PROJECT = resolve(import.meta.dirname, '..', '..');
export const CLI = join(PROJECT, 'dist', 'src', 'cli.js');

export async function zfs(...args: string[]): Promise<string> {
  return (await execa('zfs', args)).stdout;
}

/** Fails with a clear message when ZFS is not usable. */
export async function assertZfsAvailable(): Promise<void> {
  const r = await execa('zpool', ['list'], { reject: false, timeout: scaled(30_000) });
  // A zfs-fuse that stopped answering is restarted by createThrowawayPool (test/helpers/pool.ts).
  if (r.timedOut) return;
  if ((r as { code?: string }).code === 'ENOENT' || r.exitCode !== 0) {
    throw new Error(
      `ZFS is not available (zpool list: ${r.stderr || 'not found'}); run scripts/setup.sh as root (it installs and starts zfs-fuse)`,
    );
  }
}

export interface TestPool {
  readonly pool: string;
  /** Where the pool's root dataset is mounted: a root to convert directories in. */
  readonly mount: string;
  /** A fresh directory for state (journal, locks) and config files. */
  readonly work: string;
  readonly stateDir: string;
  destroy(): Promise<void>;
}

export async function createPool(label: string, sizeMb = 256): Promise<TestPool> {
  await assertZfsAvailable();
  const id = `${label}${randomBytes(3).toString('hex')}`.replace(/[^a-z0-9]/g, '');
  const files = poolFiles(`zdct${id}`.slice(0, 24));
  await createThrowawayPool(files, sizeMb);
  const work = await mkdtemp(join(tmpdir(), `zdc-${label}-`));
  return {
    pool: files.pool,
    mount: files.mount,
    work,
    stateDir: join(work, 'state'),
    async destroy() {
      await destroyThrowawayPool(files);
      await rm(work, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export function cliEnv(stateDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...(process.env as Record<string, string>), ZFS_DYNAMIC_CREATOR_STATE_DIR: stateDir, ...extra };
}

/** Runs the built CLI (what the bin and incron run). */
export async function cli(
  args: readonly string[],
  options: { stateDir: string; env?: Record<string, string>; cwd?: string; timeoutMs?: number },
): Promise<CliResult> {
  const r = await execa(process.execPath, [CLI, ...args], {
    reject: false,
    env: cliEnv(options.stateDir, options.env),
    cwd: options.cwd ?? '/',
    timeout: options.timeoutMs ?? scaled(170_000),
    stdin: 'ignore',
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Starts the CLI without waiting for it. */
export function cliSpawn(args: readonly string[], options: { stateDir: string; env?: Record<string, string> }): ResultPromise {
  return execa(process.execPath, [CLI, ...args], { reject: false, env: cliEnv(options.stateDir, options.env), cwd: '/', stdin: 'ignore' });
}

/**
 * A running CLI whose stderr is collected as it comes (killed when the test ends), and a wait for
 * a line of it.
 */
export function cliLogged(args: readonly string[], options: { stateDir: string }) {
  const child = cliSpawn(args, options);
  const out = { log: '' };
  child.stderr!.on('data', (c: Buffer) => {
    out.log += c.toString();
    if (process.env.ZDC_TEST_TEE) process.stderr.write(c);
  });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  const waitFor = async (re: RegExp, ms = scaled(60_000)): Promise<void> => {
    for (let t = Date.now(); !re.test(out.log); await sleep(20)) {
      if (child.exitCode !== null || Date.now() - t > ms) throw new Error(`never saw ${re} in the log:\n${out.log}`);
    }
  };
  return { child, out, waitFor };
}

/** Plugin lists that keep tests fast: short quiet and grace periods, no syslog. */
export function fastPlugins(
  extra: { quiet?: Record<string, unknown>; rsync?: Record<string, unknown>; zfs?: Record<string, unknown>; more?: unknown[] } = {},
): unknown[] {
  return [
    'name-filter',
    ['quiet-wait', { quietSeconds: 0.3, maxWaitSeconds: scaled(30_000) / 1000, ...extra.quiet }],
    ['zfs', { ...extra.zfs }],
    ['rsync', { graceSeconds: 0.3, maxGraceSeconds: scaled(30_000) / 1000, ...extra.rsync }],
    ...(extra.more ?? []),
  ];
}

/** Writes a JSON config for one root and returns its path. */
/** Writes a config for the pool's root (to `name` in the pool's work directory, so that several can coexist) and returns its path. */
export async function writeConfig(
  p: TestPool,
  plugins: unknown[],
  more: Record<string, unknown> = {},
  name = 'config.json',
): Promise<string> {
  const file = join(p.work, name);
  await writeFile(file, JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: p.mount, plugins }], ...more }, null, 1));
  return file;
}

export interface DatasetRow {
  name: string;
  mountpoint: string;
  mounted: string;
  state: string;
}

export async function datasets(pool: string): Promise<DatasetRow[]> {
  const out = await zfs('list', '-H', '-r', '-t', 'filesystem', '-o', `name,mountpoint,mounted,${PROP_STATE}`, pool);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [name = '', mountpoint = '', mounted = '', state = ''] = l.split('\t');
      return { name, mountpoint, mounted, state };
    });
}

/** The pool's datasets below its top one, by name relative to the pool, with their state property ('-' when unset). */
export async function datasetStates(p: Pick<TestPool, 'pool'>): Promise<Map<string, string>> {
  const rows = await datasets(p.pool);
  return new Map(rows.filter((r) => r.name !== p.pool).map((r) => [r.name.slice(p.pool.length + 1), r.state]));
}

/** Waits until every one of `names` is a live dataset of the pool; throws naming those that are not, after `timeoutMs`. */
export async function waitLive(p: Pick<TestPool, 'pool'>, names: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await datasetStates(p);
    const missing = names.filter((n) => now.get(n) !== 'live');
    if (missing.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(`not converted after ${timeoutMs} ms: ${missing.slice(0, 10).join(', ')} (${missing.length} in all)`);
    await sleep(500);
  }
}
