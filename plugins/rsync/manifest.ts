/**
 * The baseline of a conversion: for every entry of the copy as it became live, what the catch-up
 * compares against (see threeway.ts). Kept in <stateDir>/manifests/<job id>.jsonl so that a job
 * finished by `recover` after a crash knows it too: one JSON array a line, written to a temporary
 * file, fsynced and renamed into place; later changes are appended, and the last line for a path
 * wins. Paths are lossless 'latin1' strings of the raw name bytes.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { fsyncDir, isErrno } from '../../src/index.js';
import type { Kind, Meta } from './threeway.js';

export type Manifest = Map<string, Meta>;

type Line = [rel: string, type: Kind, mode: number, uid: number, gid: number, size: number, mtimeMs: number, rdev: number, target: string | null];

function toLine(rel: string, m: Meta): string {
  const line: Line = [rel, m.type, m.mode & 0o7777, m.uid, m.gid, m.type === 'file' ? m.size : 0, Math.floor(m.mtimeMs), m.rdev ?? 0, m.target ?? null];
  return `${JSON.stringify(line)}\n`;
}

function fromLine(text: string): [string, Meta] {
  const [rel, type, mode, uid, gid, size, mtimeMs, rdev, target] = JSON.parse(text) as Line;
  return [rel, { type, mode, uid, gid, size, mtimeMs, rdev, ...(target === null ? {} : { target }) }];
}

export function manifestPath(stateDir: string, jobId: string): string {
  return join(stateDir, 'manifests', `${jobId}.jsonl`);
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes the whole manifest, atomically and durably. */
export async function writeManifest(path: string, manifest: Manifest): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const out = createWriteStream(tmp, { mode: 0o600 });
  for (const [rel, meta] of manifest) {
    if (!out.write(toLine(rel, meta))) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  out.end();
  await finished(out);
  await fsyncFile(tmp);
  await rename(tmp, path);
  await fsyncDir(join(path, '..'));
}

/** Records changes to the baseline (entries the catch-up copied or adopted), durably. */
export async function appendManifest(path: string, changes: readonly (readonly [string, Meta])[]): Promise<void> {
  if (changes.length === 0) return;
  await appendFile(path, changes.map(([rel, meta]) => toLine(rel, meta)).join(''), { mode: 0o600 });
  await fsyncFile(path);
}

/** The manifest, or undefined when there is none (a job of an older version, or a lost state directory). */
export async function readManifest(path: string): Promise<Manifest | undefined> {
  const manifest: Manifest = new Map();
  try {
    const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of lines) {
      if (line.length === 0) continue;
      const [rel, meta] = fromLine(line);
      manifest.set(rel, meta);
    }
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
  return manifest;
}

export async function removeManifest(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
}
