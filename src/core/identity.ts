/** A directory's identity (device and inode) at its path, and the check that it is still that directory. */
import { lstat } from 'node:fs/promises';
import { RefusedError, quoteName } from './errors.js';
import { isErrno } from './fsutil.js';
import type { Identity } from './types.js';

/** The identity of the directory at `path`, refused (RefusedError) when it is gone, a symlink or not a directory. */
export async function directoryIdentity(path: string): Promise<Identity> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) {
      if (path.includes('\uFFFD'))
        throw new RefusedError(`${quoteName(path)} is not valid UTF-8 and cannot become a ZFS dataset; left as it is`);
      throw new RefusedError(`${quoteName(path)} vanished before its turn; nothing to do`);
    }
    throw error;
  }
  if (stats.isSymbolicLink()) throw new RefusedError(`${quoteName(path)} is a symbolic link, not a directory; left alone`);
  if (!stats.isDirectory()) throw new RefusedError(`${quoteName(path)} is not a directory; left alone`);
  return { dev: stats.dev, ino: stats.ino };
}

/** Throws unless `path` is still the directory with this identity. */
export async function assertSameDirectory(path: string, identity: Identity): Promise<void> {
  const now = await directoryIdentity(path);
  if (now.dev !== identity.dev || now.ino !== identity.ino) {
    throw new RefusedError(`${quoteName(path)} was replaced by another directory; left alone`);
  }
}
