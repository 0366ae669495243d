/** The main job on a real pool: a directory becomes a dataset with everything it held. */
import { link, mkdir, symlink, writeFile, chmod, chown, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { leftovers } from '../helpers/state.js';

let p: TestPool;
let config: string;

beforeAll(async () => {
  p = await createPool('convert');
  config = await writeConfig(p, fastPlugins());
});
afterAll(async () => {
  await p?.destroy();
});

/** A directory of the root converted into a dataset (by this test file's config), made for a test of its own. */
async function converted(name: string): Promise<string> {
  const dir = join(p.mount, name);
  await makeTree(dir, 2);
  const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
  expect({ exitCode: r.exitCode, stderr: r.stderr }).toMatchObject({ exitCode: 0, stderr: expect.stringContaining('converted into') });
  return dir;
}

describe('handle <dir>', () => {
  it('converts a directory with owners, modes, links, hard links, xattrs and ACLs', async () => {
    const dir = join(p.mount, 'run 1');
    await makeTree(dir, 30);
    await symlink('d0/f0.dat', join(dir, 'link'));
    await symlink('/nonexistent/target', join(dir, 'dangling'));
    await link(join(dir, 'd0', 'f0.dat'), join(dir, 'hard'));
    await mkdir(join(dir, 'private'));
    await writeFile(join(dir, 'private', 'secret'), 'x');
    await chown(join(dir, 'private'), 1234, 5678);
    await chown(join(dir, 'private', 'secret'), 4321, 8765);
    await chmod(join(dir, 'private', 'secret'), 0o4640);
    await chmod(dir, 0o2750);
    await chown(dir, 1001, 1002);
    // zfs-fuse has no xattrs or ACLs; OpenZFS has both. Check whatever the pool supports.
    const xattrs =
      (await execa('setfattr', ['-n', 'user.origin', '-v', 'hiseq', join(dir, 'd1', 'f1.dat')], { reject: false })).exitCode === 0;
    const acls = (await execa('setfacl', ['-m', 'u:4242:r', join(dir, 'd2', 'f2.dat')], { reject: false })).exitCode === 0;
    const before = await describeTree(dir, { mtimes: true });

    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.stderr).toContain('converted into');
    expect(r.exitCode).toBe(0);

    const rows = await datasets(p.pool);
    expect(rows).toContainEqual({ name: `${p.pool}/run 1`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    const [a, b] = await Promise.all([lstat(join(dir, 'hard')), lstat(join(dir, 'd0', 'f0.dat'))]);
    expect(a.ino).toBe(b.ino);
    if (xattrs) expect((await execa('getfattr', ['--only-values', '-n', 'user.origin', join(dir, 'd1', 'f1.dat')])).stdout).toBe('hiseq');
    if (acls) expect((await execa('getfacl', ['-c', join(dir, 'd2', 'f2.dat')])).stdout).toContain('user:4242:r--');
    expect(await leftovers(p)).toEqual([]);
  });

  it('leaves a directory that is already a dataset alone', async () => {
    const dir = await converted('already');
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('already a filesystem');
  });

  it('refuses a name that cannot be a dataset, and touches nothing', async () => {
    const dir = join(p.mount, 'bad*(rw)');
    await makeTree(dir, 3);
    const before = await describeTree(dir);
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/cannot become a ZFS dataset/);
    expect(await describeTree(dir)).toEqual(before);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/bad*(rw)`);
    expect(await leftovers(p)).toEqual([]);
  });

  it('refuses a symlink and a plain file in the root', async () => {
    await symlink('/etc', join(p.mount, 'etc-link'));
    await writeFile(join(p.mount, 'plain'), 'x');
    for (const name of ['etc-link', 'plain']) {
      const r = await cli(['--config', config, 'handle', join(p.mount, name)], { stateDir: p.stateDir });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/symbolic link|not a directory/);
    }
    // Nothing there at all: a wrong operand, said once (issue 24).
    const none = await cli(['--config', config, 'handle', join(p.mount, 'vanished')], { stateDir: p.stateDir });
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toMatch(/no such directory/);
    expect((await lstat('/etc')).isDirectory()).toBe(true);
  });

  it('seals a copy that is not the original: what the original lacks is taken out, what differs is copied again by descriptor', async () => {
    // An rsync that leaves the copy wrong in every way the seal checks: an extra file, an extra
    // directory with contents, a directory of another owner (taken out whole, with what is below
    // it), and a file with other contents and size.
    const tamper = join(p.work, 'rsync-tamper.mjs');
    await writeFile(
      tamper,
      [
        '#!/usr/bin/node',
        "import { spawnSync } from 'node:child_process';",
        "import { chownSync, mkdirSync, writeFileSync } from 'node:fs';",
        "import { join } from 'node:path';",
        'const args = process.argv.slice(2);',
        "const r = spawnSync('rsync', args, { stdio: 'inherit' });",
        "if (r.status !== 0 || args[0] === '--version') process.exit(r.status ?? 1);",
        'const dst = args.at(-1);',
        "writeFileSync(join(dst, 'not-in-original'), 'x');",
        "mkdirSync(join(dst, 'ghost', 'deeper'), { recursive: true });",
        "writeFileSync(join(dst, 'ghost', 'deeper', 'g'), 'g');",
        "chownSync(join(dst, 'd1'), 4242, 4242);",
        "writeFileSync(join(dst, 'd2', 'f2.dat'), 'tampered');",
        '',
      ].join('\n'),
    );
    await chmod(tamper, 0o755);
    const cfg = await writeConfig(p, fastPlugins({ rsync: { command: tamper } }), {}, 'tamper.json');
    const dir = join(p.mount, 'sealed');
    await makeTree(dir, 24);
    const before = await describeTree(dir, { mtimes: true });
    const r = await cli(['--config', cfg, 'handle', dir], { stateDir: p.stateDir });
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toMatchObject({ exitCode: 0, stderr: expect.stringContaining('converted into') });
    expect(r.stderr).toMatch(/4 entries of the copy not as in the original \(changed or deleted meanwhile\) taken out/);
    expect(r.stderr).toMatch(/\d+ entries copied again by descriptor/);
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    expect(await leftovers(p)).toEqual([]);
  });

  it('refuses a directory with another filesystem mounted inside it, and touches nothing', async () => {
    const dir = join(p.mount, 'has-a-mount');
    await makeTree(dir, 3);
    await mkdir(join(dir, 'scratch'));
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', join(dir, 'scratch')]);
    try {
      await writeFile(join(dir, 'scratch', 'on-tmpfs'), 'not ours to delete');
      const before = await describeTree(dir);
      const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim().split('\n').at(-1)).toContain('is a filesystem mounted inside');
      expect(await describeTree(dir)).toEqual(before);
      expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/has-a-mount`);
    } finally {
      await execa('umount', [join(dir, 'scratch')]);
    }
  });

  it('refuses a rootdir that is not the mountpoint of rootfs', async () => {
    // The mountpoint of another dataset, given as the root of the pool's dataset.
    const other = await converted('other root');
    const bad = await writeConfig({ ...p, mount: other }, fastPlugins(), {}, 'wrong-root.json');
    await mkdir(join(other, 'inner'));
    const r = await cli(['--config', bad, 'handle', join(other, 'inner')], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('is not the mountpoint of');
  });

  it('fails cleanly when rsync is missing: original whole, no dataset left', async () => {
    const dir = join(p.mount, 'norsync');
    await makeTree(dir, 5);
    const before = await describeTree(dir);
    const cfg = await writeConfig(p, fastPlugins({ rsync: { command: '/nonexistent/rsync' } }), {}, 'no-rsync.json');
    const r = await cli(['--config', cfg, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('/nonexistent/rsync not found');
    expect(await describeTree(dir)).toEqual(before);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/norsync`);
  });

  it('fails cleanly when the copy fails half-way: original whole, no dataset left', async () => {
    const dir = join(p.mount, 'copyfails');
    await makeTree(dir, 5);
    const before = await describeTree(dir);
    // An rsync flag the real rsync rejects makes the copy fail after the dataset was made.
    const cfg = await writeConfig(p, fastPlugins({ rsync: { flags: ['-a', '--no-such-flag'] } }), {}, 'copy-fails.json');
    const r = await cli(['--config', cfg, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/migrate failed: .*rolled back/);
    expect(await describeTree(dir)).toEqual(before);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/copyfails`);
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('the original command line (incron)', () => {
  it('converts on IN_CREATE,IN_ISDIR and ignores other events quietly', async () => {
    const dir = join(p.mount, '140613_D00123_0001_AC123DEFXX');
    await makeTree(dir, 5);
    const ignored = await cli(['--delay=0', p.pool, p.mount, '140613_D00123_0001_AC123DEFXX', 'IN_CREATE'], { stateDir: p.stateDir });
    expect(ignored.exitCode).toBe(0);
    expect(ignored.stderr).toBe('');
    const r = await cli(
      [
        '--config',
        config,
        '--delay=0',
        '--only-dirs-matching=^\\d\\d\\d\\d\\d\\d_\\w\\d\\d\\d\\d\\d_\\d\\d\\d\\d_\\w\\w\\w\\w\\w\\w\\w\\w\\w\\w$',
        p.pool,
        p.mount,
        '140613_D00123_0001_AC123DEFXX',
        'IN_CREATE,IN_ISDIR',
      ],
      { stateDir: p.stateDir },
    );
    expect(r.exitCode).toBe(0);
    expect((await datasets(p.pool)).map((d) => d.name)).toContain(`${p.pool}/140613_D00123_0001_AC123DEFXX`);
  });

  it('skips names the Python regex does not match, with a log line', async () => {
    const dir = join(p.mount, 'not-a-run');
    await makeTree(dir, 2);
    const r = await cli(
      ['--config', config, '--only-dirs-matching=^(?P<date>\\d{6})_', p.pool, p.mount, 'not-a-run', 'IN_CREATE,IN_ISDIR'],
      { stateDir: p.stateDir },
    );
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('skipped: name does not match');
    expect((await lstat(dir)).isDirectory()).toBe(true);
  });
});
