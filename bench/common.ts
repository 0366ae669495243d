/** Shared by the benchmarks: a throwaway pool, the CLI, medians, trees, peak RSS of a child. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { createThrowawayPool, destroyThrowawayPool, poolFiles } from '../test/helpers/pool.js';

export const CLI = resolve(import.meta.dirname, '..', 'src', 'cli.js');

export type Log = (line: string) => void;

export interface BenchPool {
  readonly pool: string;
  readonly mount: string;
  readonly work: string;
  readonly stateDir: string;
  /** A config with the shipped defaults, or with the given plugins. */
  config(plugins?: unknown[], more?: Record<string, unknown>): Promise<string>;
  destroy(): Promise<void>;
}

export async function benchPool(label: string, sizeMiB: number): Promise<BenchPool> {
  const files = poolFiles(`zdcb${label}${randomBytes(3).toString('hex')}`.slice(0, 24));
  const { pool, mount } = files;
  const work = await mkdtemp(join(tmpdir(), 'zdc-bench-'));
  await createThrowawayPool(files, sizeMiB);
  const stateDir = join(work, 'state');
  let n = 0;
  return {
    pool,
    mount,
    work,
    stateDir,
    async config(plugins, more = {}) {
      const file = join(work, `config${n++}.json`);
      await writeFile(
        file,
        JSON.stringify({ stateDir, roots: [{ rootfs: pool, rootdir: mount, ...(plugins ? { plugins } : {}) }], ...more }),
      );
      return file;
    },
    async destroy() {
      await destroyThrowawayPool(files);
      await rm(work, { recursive: true, force: true });
    },
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `files` files of 4 KiB in directories of 1,000, plus one file of `bigMiB` MiB. */
export function makeTree(dir: string, files: number, bigMiB: number): void {
  mkdirSync(dir, { recursive: true });
  const block = Buffer.alloc(4096);
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${Math.floor(i / 1000)}`);
    if (i % 1000 === 0) mkdirSync(sub);
    block.writeUInt32LE(i, 0);
    writeFileSync(join(sub, `f${i}`), block);
  }
  if (bigMiB > 0) {
    const chunk = randomBytes(1024 * 1024);
    const parts = Array.from({ length: bigMiB }, () => chunk);
    writeFileSync(join(dir, 'big.bin'), Buffer.concat(parts));
  }
}

/**
 * Runs `node args` and returns wall seconds and the Node process's own peak RSS in MiB (read by a
 * preloaded hook at exit: GNU time's figure would be the largest of the process and its children,
 * rsync included).
 */
export async function timedNode(
  args: readonly string[],
): Promise<{ seconds: number; maxRssMiB: number; exitCode: number; stderr: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'zdc-bench-rss-'));
  const hook = join(dir, 'rss.cjs');
  const out = join(dir, 'rss');
  await writeFile(
    hook,
    `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, String(process.resourceUsage().maxRSS)));\n`,
  );
  const started = process.hrtime.bigint();
  const r = await execa(process.execPath, ['--require', hook, ...args], { reject: false });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const kib = Number(await readFile(out, 'utf8').catch(() => '0'));
  await rm(dir, { recursive: true, force: true });
  return { seconds, maxRssMiB: kib / 1024, exitCode: r.exitCode ?? -1, stderr: String(r.stderr) };
}

/** Destroys a dataset, retrying while zfs says it is busy (a mount just released). */
export async function destroyDataset(name: string): Promise<void> {
  for (let i = 1; ; i++) {
    const r = await execa('zfs', ['destroy', '-f', name], { reject: false });
    if (r.exitCode === 0) return;
    if (i >= 20 || !/busy/.test(String(r.stderr))) throw new Error(`zfs destroy ${name}: ${String(r.stderr).trim()}`);
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

/** Runs a command under GNU time: wall seconds and peak RSS in MiB (the largest of it and its children). */
export async function timed(
  file: string,
  args: readonly string[],
  env?: Record<string, string>,
): Promise<{ seconds: number; maxRssMiB: number; exitCode: number; stderr: string }> {
  const out = join(tmpdir(), `zdc-bench-time-${randomBytes(4).toString('hex')}`);
  const started = process.hrtime.bigint();
  const r = await execa('/usr/bin/time', ['-o', out, '-f', '%M', file, ...args], {
    reject: false,
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const kib = Number((await readFile(out, 'utf8').catch(() => '0')).trim().split('\n').pop());
  await rm(out, { force: true });
  return { seconds, maxRssMiB: kib / 1024, exitCode: r.exitCode ?? -1, stderr: String(r.stderr) };
}
