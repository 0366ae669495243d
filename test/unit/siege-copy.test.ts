/**
 * Copies that cannot be wedged (issue 19, items 7, 8, 13), without ZFS: the zero-skipping copy of
 * the catch-up, the progress watchdog on a real blocked process, and the rsync the copy requires.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { copyEntry, openDir, run, statAt } from '../../src/index.js';
import { StallDetector, watchProgress, CopyStalledError } from '../../plugins/rsync/watchdog.js';
import { atLeast, checkRsync, parseRsyncVersion } from '../../plugins/rsync/version.js';
import { mostlyHoles } from '../../plugins/rsync/clone.js';
import { spaceOf } from '../../plugins/zfs/space.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'zdc-siege-copy-'));
  dirs.push(d);
  return d;
}
const sha = async (path: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

describe('the descriptor copy keeps holes', () => {
  it('a 64 MiB file with 3 small extents of data is copied with its holes: same content, about as few blocks as the original', async () => {
    const d = await tmp();
    const file = join(d, 'sparse');
    const fh = await open(file, 'w');
    await fh.write(Buffer.alloc(5000, 1), 0, 5000, 0);
    await fh.write(Buffer.alloc(70_000, 2), 0, 70_000, 40 << 20);
    await fh.write(Buffer.from('tail'), 0, 4, (64 << 20) - 4);
    await fh.close();
    await execa('mkdir', [join(d, 'out')]);
    const [src, dst] = await Promise.all([openDir(d), openDir(join(d, 'out'))]);
    try {
      const info = await statAt(src, 'sparse');
      expect(info.blocks! * 512).toBeLessThan(1 << 20);
      const { bytes } = await copyEntry(src, 'sparse', dst, 'sparse', info);
      expect(bytes).toBe(64 << 20);
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
    const copy = await stat(join(d, 'out', 'sparse'));
    expect(copy.size).toBe(64 << 20);
    expect(copy.blocks * 512).toBeLessThan(1 << 20);
    expect(await sha(join(d, 'out', 'sparse'))).toBe(await sha(file));
  });

  it('a file ending in a hole, and one made only of a hole, keep their length', async () => {
    const d = await tmp();
    await writeFile(join(d, 'head'), 'data');
    await execa('truncate', ['-s', '8M', join(d, 'head')]);
    await execa('truncate', ['-s', '3M', join(d, 'empty')]);
    await execa('mkdir', [join(d, 'out')]);
    const [src, dst] = await Promise.all([openDir(d), openDir(join(d, 'out'))]);
    try {
      for (const name of ['head', 'empty']) await copyEntry(src, name, dst, name, await statAt(src, name));
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
    for (const name of ['head', 'empty']) {
      const [a, b] = await Promise.all([stat(join(d, name)), stat(join(d, 'out', name))]);
      expect(b.size).toBe(a.size);
      expect(b.blocks).toBeLessThanOrEqual(a.blocks + 8);
      expect(await sha(join(d, 'out', name))).toBe(await sha(join(d, name)));
    }
  });

  it('block cloning leaves files that are mostly holes to rsync --sparse', () => {
    expect(mostlyHoles(8n << 30n, 0n)).toBe(true);
    expect(mostlyHoles(4n << 20n, 8192n)).toBe(false);
    expect(mostlyHoles(100_000n, 0n)).toBe(false);
  });
});

describe('the space a copy takes', () => {
  it('a file its length, a sparse one what it allocates, never less than what it allocates', () => {
    expect(spaceOf({ type: 'file', size: 8 * 2 ** 30, blocks: 0 })).toBe(0);
    // zfs-fuse's stale st_blocks (a quarter of a file's): its length counts.
    expect(spaceOf({ type: 'file', size: 12 << 20, blocks: (3 << 20) / 512 })).toBe(12 << 20);
    expect(spaceOf({ type: 'file', size: 100, blocks: 8 })).toBe(4096);
    expect(spaceOf({ type: 'dir', size: 5, blocks: 3 })).toBe(1536);
  });
});

describe('the progress watchdog', () => {
  it('says stalled only when the samples have not changed for the whole stall time', () => {
    const d = new StallDetector(1000, 0);
    expect(d.observe('a', 0)).toBe(false);
    expect(d.observe('a', 999)).toBe(false);
    expect(d.observe('b', 1500)).toBe(false);
    expect(d.observe('b', 2400)).toBe(false);
    d.touch(2400);
    expect(d.observe('b', 3300)).toBe(false);
    expect(d.observe('b', 3400)).toBe(true);
  });

  it('stops a process blocked opening a FIFO, and says why', async () => {
    const d = await tmp();
    const fifo = join(d, 'fifo');
    await execa('mkfifo', [fifo]);
    const stall = new AbortController();
    let stalled = false;
    const started = Date.now();
    const result = run('sh', ['-c', 'cat < "$0"', fifo], {
      signal: stall.signal,
      onSpawn: (pid) => {
        watchProgress(pid, 500, () => {
          stalled = true;
          stall.abort();
        });
      },
    });
    await expect(result).rejects.toThrow(/cancelled/);
    expect(stalled).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(new CopyStalledError(500).message).toMatch(/^the copy made no progress for 500 s: .*FIFO/);
  });

  it('lets a process that keeps working run past the stall time', async () => {
    let stalled = false;
    await run('sh', ['-c', 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'], {
      onSpawn: (pid) => {
        const w = watchProgress(pid, 300, () => (stalled = true));
        setTimeout(() => w.stop(), 20_000).unref();
      },
    });
    expect(stalled).toBe(false);
  });
});

describe('the rsync the copy requires', () => {
  it('reads the version from rsync --version', () => {
    expect(parseRsyncVersion('rsync  version 3.2.7  protocol version 31\nCopyright')).toEqual([3, 2, 7]);
    expect(parseRsyncVersion('rsync  version v3.5.0  protocol version 32')).toEqual([3, 5, 0]);
    expect(parseRsyncVersion('openrsync: protocol version 29')).toBeUndefined();
    expect(atLeast([3, 5, 0], [3, 5, 0])).toBe(true);
    expect(atLeast([3, 4, 4], [3, 5, 0])).toBe(false);
    expect(atLeast([4, 0, 0], [3, 5, 0])).toBe(true);
  });

  it("accepts this machine's rsync by its version", async () => {
    const r = await checkRsync('rsync');
    expect(r.ok).toBe(true);
    expect(r.detail).toMatch(/3\.5\.0 or later/);
  });

  it('an older rsync that reads through a swapped directory is refused; one with the fix backported passes the probe', async () => {
    const d = await tmp();
    // An "older" rsync: the real one under another version number, with (insecure) and without
    // (backported) the legacy behaviour that rsync 3.5.0 keeps behind --insecure-links.
    const fake = async (name: string, extra: string): Promise<string> => {
      const path = join(d, name);
      await writeFile(
        path,
        `#!/bin/sh\nif [ "$1" = --version ]; then echo 'rsync  version 3.2.7  protocol version 31'; exit 0; fi\nexec rsync ${extra} "$@"\n`,
      );
      await chmod(path, 0o755);
      return path;
    };
    const old = await checkRsync(await fake('old-rsync', '--insecure-links'));
    expect(old.ok).toBe(false);
    expect(old.detail).toMatch(/^rsync 3\.2\.7 reads through a directory swapped for a symlink.*install rsync 3\.5\.0 or later/);
    const backported = await checkRsync(await fake('backported-rsync', ''));
    expect(backported.ok).toBe(true);
    expect(backported.detail).toMatch(/older than 3\.5\.0, but a probe shows it refuses/);
  });
});
