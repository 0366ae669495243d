/**
 * Room for the copy, checked before the dataset is made: one user's huge (or sparse, if the copy
 * wrote its holes out) directory must not fill the pool for everyone, nor be copied whole only
 * to be refused by the quota at the swap. A directory whose files take more space on disk than
 * the root's dataset has available, or than the quota/refquota the new dataset will get, is
 * refused before anything is made or written: the original is left as it is.
 *
 * What the copy takes is measured by walking the original by descriptor, each inode once: a
 * file's length, or what it allocates when that is far less (holes, which the copy keeps). That walk is needed only when the whole root's data (its `referenced`) would not
 * fit: any directory of it fits otherwise.
 */
import { RefusedError, openDir, quoteName, walk, type Job } from '../../src/index.js';
import { parseSize, type Zfs } from './zfs.js';

/** What the new dataset may hold, and why: the smallest of the room and the configured limits. */
export interface Room {
  readonly bytes: number;
  readonly why: string;
}

const gib = (bytes: number): string => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`);

/**
 * The space an entry's copy takes: a regular file's length, unless it allocates under an eighth
 * of it (holes, which the copy keeps, or data compressed that well); other entries their blocks.
 * Not the blocks alone: zfs-fuse reports a file's st_blocks long before its data reaches the
 * pool (a quarter of a 12 MiB file's for minutes), and a copy refused late is the old behaviour.
 */
export function spaceOf(e: { type: string; size: number; blocks?: number }): number {
  const allocated = (e.blocks ?? 0) * 512;
  if (e.type !== 'file') return allocated;
  return e.size >= 1 << 20 && allocated * 8 < e.size ? allocated : Math.max(e.size, allocated);
}

/** Space the files below `job.path` allocate on disk, in bytes (each inode once, other filesystems left out). */
export async function allocatedBytes(job: Job): Promise<number> {
  const identity = job.record.identity;
  const dir = await openDir(job.path, identity);
  const seen = new Set<string>();
  let bytes = 0;
  try {
    await walk(
      dir,
      (e) => {
        if (e.crossDevice) return;
        if (e.nlink > 1 && e.type !== 'dir') {
          const key = `${e.dev}:${e.ino}`;
          if (seen.has(key)) return;
          seen.add(key);
        }
        bytes += spaceOf(e);
      },
      { signal: job.signal },
    );
  } finally {
    await dir.close();
  }
  return bytes;
}

/** The smallest of the space available to `rootfs` and the configured quota and refquota. */
export async function roomFor(
  zfs: Zfs,
  rootfs: string,
  limits: Readonly<Record<string, string>>,
): Promise<Room & { referenced: number; limited: boolean }> {
  const out = await zfs.exec(['get', '-H', '-p', '-o', 'value', 'available,referenced', rootfs]);
  const [available, referenced] = out.trim().split('\n').map(Number);
  if (available === undefined || referenced === undefined || !Number.isFinite(available) || !Number.isFinite(referenced)) {
    throw new Error(`zfs get available,referenced ${rootfs}: unexpected answer ${JSON.stringify(out.trim())}`);
  }
  let room: Room = { bytes: available, why: `${rootfs} has ${gib(available)} available` };
  for (const key of ['quota', 'refquota']) {
    const value = limits[key];
    const bytes = value === undefined ? undefined : parseSize(value);
    if (bytes !== undefined && bytes > 0 && bytes < room.bytes)
      room = { bytes, why: `the new dataset's ${key} is ${value} (the zfs plugin's properties)` };
  }
  return { ...room, referenced, limited: room.bytes < available };
}

/** Refuses a directory whose copy would not fit; nothing has been made yet. */
export async function checkRoom(zfs: Zfs, job: Job, limits: Readonly<Record<string, string>>): Promise<void> {
  const room = await roomFor(zfs, job.root.rootfs, limits);
  // The root's data and its available space are counted as ZFS has written them out (seconds
  // behind, on zfs-fuse minutes): the shortcut only for the pool's room, never against a limit.
  if (!room.limited && room.referenced <= room.bytes) return;
  const needed = await allocatedBytes(job);
  if (needed <= room.bytes) return;
  throw new RefusedError(
    `${quoteName(job.name)} does not fit: its files take ${gib(needed)} on disk and ${room.why}; nothing was copied, the directory is left as it is (make room, or move some of it elsewhere)`,
    // Over a configured quota only a change to the directory or the config helps: remembered.
    // The pool's room changes with everyone's writes: tried again at every run.
    { permanent: room.limited },
  );
}
