import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectZfs, parseZfsVersion } from '../../plugins/zfs/implementation.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zdc-zfsimpl-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function fake(name: string, script: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\n${script}\n`);
  await chmod(path, 0o755);
  return path;
}

describe('detectZfs', () => {
  it('parses what OpenZFS 2.3 prints (measured in the OpenZFS guest)', () => {
    expect(parseZfsVersion('zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n')).toEqual({
      userland: '2.3.2-2~bpo12+2',
      kernelModule: '2.3.2-2~bpo12+2',
    });
  });

  it('tells OpenZFS, with and without its kernel module', async () => {
    expect(await detectZfs(await fake('openzfs', "printf 'zfs-2.3.2-2~bpo12+2\\nzfs-kmod-2.3.2-2~bpo12+2\\n'"))).toMatchObject({
      kind: 'openzfs',
      version: '2.3.2-2~bpo12+2',
      kernelModule: '2.3.2-2~bpo12+2',
      summary: 'OpenZFS 2.3.2-2~bpo12+2 (kernel module 2.3.2-2~bpo12+2)',
    });
    const noModule = await detectZfs(await fake('openzfs-nomod', "printf 'zfs-2.1.11-1\\nzfs-kmod-unknown\\n' ; exit 0"));
    expect(noModule).toMatchObject({ kind: 'openzfs', version: '2.1.11-1', kernelModule: 'unknown' });
  });

  it('tells zfs-fuse by its answer to `zfs version` (as zfs-fuse 0.7 prints it)', async () => {
    const z = await fake('zfs-fuse', "echo \"unrecognized command 'version'\" >&2; echo 'usage: zfs command args ...' >&2; exit 2");
    expect(await detectZfs(z)).toMatchObject({ kind: 'zfs-fuse', version: '0.7' });
  });
});
