/**
 * Remembered refusals: a directory refused for a reason that cannot change without a change to
 * the directory or to the config (a permanent RefusedError: a name ZFS forbids, over the quota,
 * too big for the pool) is recorded in <stateDir>/refusals/<job id>.json with the directory's
 * identity (dev, ino, ctime, mtime) and a hash of the root's effective config. While both are
 * the same, the directory is not tried again (nor reported again); a change to either, or an
 * explicit `handle`, tries it again. One file per directory, written atomically: incron's runs,
 * the daemon and reconcile may record at the same time.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno, writeFileAtomic } from './fsutil.js';
import { jobId } from './journal.js';
import type { Layout, PluginSpec } from './types.js';

/** What identifies the directory as it was when refused: any change to its entries changes ctime. */
export interface DirectoryStamp {
  readonly dev: number;
  readonly ino: number;
  readonly ctimeMs: number;
  readonly mtimeMs: number;
}

export interface Refusal {
  readonly version: 1;
  readonly rootdir: string;
  readonly name: string;
  readonly reason: string;
  /** When it was first refused (ISO 8601, UTC). */
  readonly since: string;
  readonly stamp: DirectoryStamp;
  readonly configHash: string;
}

/** A hash of what decides a root's refusals: its dataset and its plugins with their options. */
export function configHash(rootfs: string, plugins: readonly PluginSpec[] | undefined, layout?: Layout): string {
  return createHash('sha256')
    .update(JSON.stringify({ rootfs, plugins: plugins ?? [], ...(layout ? { layout } : {}) }))
    .digest('hex')
    .slice(0, 20);
}

/** The directory's stamp now, or undefined when it is not a directory any more. */
export async function stampOf(path: string): Promise<DirectoryStamp | undefined> {
  try {
    const s = await lstat(path);
    return s.isDirectory() ? { dev: s.dev, ino: s.ino, ctimeMs: s.ctimeMs, mtimeMs: s.mtimeMs } : undefined;
  } catch {
    return undefined;
  }
}

const sameStamp = (a: DirectoryStamp, b: DirectoryStamp): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.ctimeMs === b.ctimeMs && a.mtimeMs === b.mtimeMs;

export class RefusalMemory {
  readonly dir: string;

  constructor(
    stateDir: string,
    private readonly rootdir: string,
    private readonly hash: string,
  ) {
    this.dir = join(stateDir, 'refusals');
  }

  private file(name: string): string {
    return join(this.dir, `${jobId(this.rootdir, name)}.json`);
  }

  /** The refusal recorded for `name`, whatever its stamp. */
  async read(name: string): Promise<Refusal | undefined> {
    return parse(await readFile(this.file(name), 'utf8').catch(() => ''), this.rootdir, name);
  }

  /** The refusal that still stands: same directory, unchanged, under the same config. */
  async standing(name: string): Promise<Refusal | undefined> {
    const refusal = await this.read(name);
    if (refusal === undefined || refusal.configHash !== this.hash) return undefined;
    const now = await stampOf(join(this.rootdir, name));
    return now !== undefined && sameStamp(now, refusal.stamp) ? refusal : undefined;
  }

  /** Records a refusal of the directory as it is now (nothing when it is gone). */
  async remember(name: string, reason: string): Promise<Refusal | undefined> {
    const stamp = await stampOf(join(this.rootdir, name));
    if (stamp === undefined) return undefined;
    const refusal: Refusal = {
      version: 1,
      rootdir: this.rootdir,
      name,
      reason,
      since: new Date().toISOString(),
      stamp,
      configHash: this.hash,
    };
    await mkdir(this.dir, { mode: 0o700 }).catch((error: unknown) => {
      if (!isErrno(error, 'EEXIST')) throw error;
    });
    await writeFileAtomic(this.file(name), `${JSON.stringify(refusal)}\n`, 0o600);
    return refusal;
  }

  async forget(name: string): Promise<void> {
    await rm(this.file(name), { force: true });
  }

  /** Every refusal recorded for this root (stale ones included: `standing` tells). */
  async list(): Promise<Refusal[]> {
    return (await listRefusals(this.dir)).filter((r) => r.rootdir === this.rootdir);
  }

  /** Forgets the refusals of names that are no longer plain directories of the root. */
  async prune(directories: ReadonlySet<string>): Promise<void> {
    for (const r of await this.list()) if (!directories.has(r.name)) await this.forget(r.name);
  }
}

/** Every refusal recorded in a stateDir's refusals directory. */
export async function listRefusals(dir: string): Promise<Refusal[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: Refusal[] = [];
  for (const file of names.filter((n) => /^[0-9a-f]{20}\.json$/.test(n))) {
    const refusal = parse(await readFile(join(dir, file), 'utf8').catch(() => ''));
    if (refusal !== undefined && `${jobId(refusal.rootdir, refusal.name)}.json` === file) out.push(refusal);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function parse(text: string, rootdir?: string, name?: string): Refusal | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = raw as Partial<Refusal> | null;
  if (typeof r !== 'object' || r === null || r.version !== 1 || typeof r.rootdir !== 'string' || typeof r.name !== 'string')
    return undefined;
  if (
    typeof r.reason !== 'string' ||
    typeof r.since !== 'string' ||
    typeof r.configHash !== 'string' ||
    typeof r.stamp !== 'object' ||
    r.stamp === null
  )
    return undefined;
  if ((rootdir !== undefined && r.rootdir !== rootdir) || (name !== undefined && r.name !== name)) return undefined;
  return r as Refusal;
}
