/** Durable file writes: temporary file, fsync, rename, fsync of the directory. */
import type { BigIntStats } from 'node:fs';
import { open, rename, unlink, copyFile, stat } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A temporary file beside `path`, written whole and fsynced: the caller renames it into place or removes it. */
export interface TempFile {
  readonly tmp: string;
  /** The temporary file's stat (bigint) once written: its identity, size, mtime and mode. */
  readonly stats: BigIntStats;
}

/**
 * Writes `content` to a new temporary file beside `path` with `mode`, whatever the umask (the
 * systemd units set UMask=0077: /etc/exports must not turn 0600 because the tool rewrote it),
 * and fsyncs it. On failure nothing is left behind.
 */
export async function writeTempFile(path: string, content: string | Uint8Array, mode: number): Promise<TempFile> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.tmp`);
  const handle = await open(tmp, 'wx', mode);
  try {
    await handle.chmod(mode);
    await handle.writeFile(content);
    await handle.sync();
    return { tmp, stats: await handle.stat({ bigint: true }) };
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `path` with `content` (text or bytes) atomically; a reader sees the old or the new
 * file, never half. Without `mode`, the file keeps its mode (0644 for a new one).
 */
export async function writeFileAtomic(path: string, content: string | Uint8Array, mode?: number): Promise<void> {
  let keepMode = mode;
  if (keepMode === undefined) {
    try {
      keepMode = (await stat(path)).mode & 0o7777;
    } catch {
      keepMode = 0o644;
    }
  }
  const { tmp } = await writeTempFile(path, content, keepMode);
  try {
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
  await fsyncDir(dirname(path));
}

/** Copies `path` to `backup` durably (when `path` exists). */
export async function backupFile(path: string, backup: string): Promise<boolean> {
  try {
    await copyFile(path, backup);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  const handle = await open(backup, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

export function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}
