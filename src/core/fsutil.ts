/** Durable file writes: temporary file, fsync, rename, fsync of the directory. */
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

/** Replaces `path` with `content` atomically; a reader sees the old or the new file, never half. */
export async function writeFileAtomic(path: string, content: string, mode?: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  let keepMode = mode;
  if (keepMode === undefined) {
    try {
      keepMode = (await stat(path)).mode & 0o7777;
    } catch {
      keepMode = 0o644;
    }
  }
  const handle = await open(tmp, 'wx', keepMode);
  try {
    // The mode asked for, whatever the umask (the systemd units set UMask=0077: /etc/exports
    // must not turn 0600 because the tool rewrote it).
    await handle.chmod(keepMode);
    await handle.writeFile(content);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
  await handle.close();
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
