/**
 * Hostile directory names, and a directory swapped for a symlink while the job
 * waits. Each is converted correctly or refused with one clear line; nothing
 * outside the root changes, no data is lost, no dataset is left half-made, and
 * no name is ever run as a command or read as an option.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliSpawn, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { escapePath } from '../../plugins/nfs-exports/exports.js';
import { DROP_IN, EXPORTS, exported, saveExportState } from '../helpers/exports.js';
import { leftovers } from '../helpers/state.js';
import { lockPath } from '../../src/core/lock.js';
import { jobId } from '../../src/core/journal.js';

const PWNED = '/tmp/pwned';

let p: TestPool;
let config: string;
let restoreExports: () => Promise<void> = async () => undefined;
let exportsBefore: Buffer;
let etcBefore: string;

/** A fingerprint of /etc's top level and of a few files a mistake would hit. */
async function etcFingerprint(): Promise<string> {
  const names = (await readdir('/etc')).sort();
  const hash = createHash('sha256').update(names.join('\0'));
  for (const f of ['/etc/passwd', '/etc/hostname', '/etc/exports']) hash.update(await readFile(f).catch(() => Buffer.from('-')));
  return hash.digest('hex');
}

async function datasetNames(): Promise<string[]> {
  return (await datasets(p.pool)).map((d) => d.name);
}

beforeAll(async () => {
  restoreExports = await saveExportState();
  await rm(PWNED, { force: true });
  await rm(DROP_IN, { force: true });
  await execa('exportfs', ['-r']);
  p = await createPool('hostile');
  config = await writeConfig(p, fastPlugins({ more: [['nfs-exports', { clients: '127.0.0.1(ro,no_subtree_check)' }]] }));
  exportsBefore = await readFile(EXPORTS);
  etcBefore = await etcFingerprint();
});

afterAll(async () => {
  await p?.destroy();
  await restoreExports();
});

/** What must hold after every case. */
async function invariants(): Promise<void> {
  for (const f of [PWNED, '/pwned', join(p.mount, 'pwned')]) expect(existsSync(f)).toBe(false);
  expect(await readFile(EXPORTS)).toEqual(exportsBefore);
  expect(await etcFingerprint()).toBe(etcBefore);
  // No helper, journal file, lock or manifest left, and every dataset live.
  expect(await leftovers(p)).toEqual([]);
}

/** Names a dataset can hold. */
const HOLDABLE = ['with space', '-leading-dash', '--help', '-o mountpoint'];

/** Makes `name` a directory with a tree and converts it; returns the tree and what the run said. */
async function convertNew(name: string) {
  const dir = join(p.mount, name);
  await makeTree(dir, 4);
  const before = await describeTree(dir);
  const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
  return { dir, before, r };
}

describe('names a ZFS dataset can hold: converted and exported with the escaped path', () => {
  for (const name of HOLDABLE) {
    it(JSON.stringify(name), async () => {
      const { dir, before, r } = await convertNew(name);
      expect(r.stderr).toContain('converted into');
      expect(r.exitCode).toBe(0);
      expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
      expect(await describeTree(dir)).toEqual(before);
      expect(await readFile(DROP_IN, 'utf8')).toContain(`\n${escapePath(dir)} 127.0.0.1(ro,no_subtree_check)\n`);
      expect(await exported()).toContain(dir);
      await invariants();
    });
  }

  it('exports exactly the converted paths, nothing more', async () => {
    // Each converted here unless the tests above already did (this test also runs on its own).
    for (const name of HOLDABLE) {
      if ((await datasetNames()).includes(`${p.pool}/${name}`)) continue;
      expect((await convertNew(name)).r).toMatchObject({ exitCode: 0, stderr: expect.stringContaining('converted into') });
    }
    const want = HOLDABLE.map((n) => join(p.mount, n)).sort();
    expect(await exported()).toEqual(want);
  });

  it('a name starting with "-" from incron (the original command line) is a name, not an option', async () => {
    const name = '-dash-from-incron';
    const dir = join(p.mount, name);
    await makeTree(dir, 2);
    const r = await cli(['--config', config, '--delay=0', p.pool, p.mount, name, 'IN_CREATE,IN_ISDIR'], { stateDir: p.stateDir });
    expect(r.stderr).not.toMatch(/unknown option/);
    expect(r.exitCode).toBe(0);
    expect(await datasetNames()).toContain(`${p.pool}/${name}`);
    await invariants();
  });
});

describe('names ZFS cannot hold: refused with one line, left as they are', () => {
  const refused: [string, RegExp][] = [
    ['new\nline', /cannot become a ZFS dataset/],
    ['tab\tname', /cannot become a ZFS dataset/],
    [`quote's "double"`, /cannot become a ZFS dataset/],
    ['$(touch /tmp/pwned)', /cannot become a ZFS dataset/],
    ['`touch /tmp/pwned`', /cannot become a ZFS dataset/],
    ['a;touch pwned;b', /cannot become a ZFS dataset/],
    ['back\\slash\\', /cannot become a ZFS dataset/],
    ['at@sign', /cannot become a ZFS dataset/],
    ['per%cent', /cannot become a ZFS dataset/],
    ['hash#tag', /cannot become a ZFS dataset/],
    ['x *(rw,no_root_squash)', /cannot become a ZFS dataset/],
    ['a'.repeat(255), /bytes long, and ZFS allows/],
  ];
  for (const [name, why] of refused) {
    it(JSON.stringify(name.length > 40 ? `${name.slice(0, 10)}… (${name.length} bytes)` : name), async () => {
      // A name holding "/" is a path: the directory that appears in the root is its first part.
      const top = name.split('/')[0]!;
      const dir = join(p.mount, top);
      await makeTree(join(p.mount, name), 3);
      const before = await describeTree(dir);
      const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
      expect(r.exitCode).toBe(1);
      const last = r.stderr.trimEnd().split('\n').at(-1)!;
      expect(last).toMatch(why);
      expect(last).toContain(JSON.stringify(top)); // the name, escaped, on one line
      if (top !== name) {
        const nested = await cli(['--config', config, 'handle', join(p.mount, name)], { stateDir: p.stateDir });
        expect(nested.exitCode).toBe(2);
        expect(nested.stderr.trimEnd().split('\n')).toHaveLength(1);
        expect(nested.stderr).toContain('is not a direct child of a configured root');
      }
      expect(await describeTree(dir)).toEqual(before);
      expect(await datasetNames()).not.toContain(`${p.pool}/${top}`);
      expect(await exported()).not.toContain(dir);
      await invariants();
    });
  }

  it('a name that is not UTF-8 is refused by a sweep and left as it is', async () => {
    const raw = Buffer.concat([Buffer.from(`${p.mount}/bad`), Buffer.from([0xff, 0xfe]), Buffer.from('name')]);
    await mkdir(raw);
    await writeFile(Buffer.concat([raw, Buffer.from('/data')]), 'precious');
    const r = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    // Still there, byte for byte, with its data; no dataset for it.
    const names = (await readdir(p.mount, { encoding: 'buffer' })).map((b) => b.toString('hex'));
    expect(names).toContain(raw.subarray(p.mount.length + 1).toString('hex'));
    expect((await readFile(Buffer.concat([raw, Buffer.from('/data')]))).toString()).toBe('precious');
    expect((await datasetNames()).filter((n) => n.includes('bad'))).toEqual([]);
    // The sweep says which name it could not handle, on one line.
    expect(`${r.stdout}\n${r.stderr}`).toMatch(/bad.*name/);
    expect(r.stderr).toMatch(/"bad\\ufffd\\ufffdname"|bad\uFFFD\uFFFDname.*is not valid UTF-8/);
    // eslint-disable-next-line no-control-regex
    for (const line of r.stderr.trimEnd().split('\n')) expect(line).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
    await invariants();
  });
});

describe('a directory swapped for a symlink to /etc while the job waits', () => {
  it('is refused; /etc and the original data are untouched; no dataset', async () => {
    const cfg = await writeConfig(
      p,
      fastPlugins({ quiet: { quietSeconds: 2 }, more: [['nfs-exports', { clients: '127.0.0.1(ro,no_subtree_check)' }]] }),
      {},
      'slow-quiet.json',
    );
    const name = 'swapped';
    const dir = join(p.mount, name);
    const moved = join(p.mount, 'swapped.moved');
    await makeTree(dir, 5);
    const before = await describeTree(dir);
    const child = cliSpawn(['--config', cfg, 'handle', dir], { stateDir: p.stateDir });
    // Once the job holds its lock it is filtering or waiting; the wait lasts at least 2 s.
    const lock = lockPath(p.stateDir, jobId(p.mount, name));
    for (
      let i = 0;
      i < 100 &&
      !(await lstat(lock).then(
        () => true,
        () => false,
      ));
      i++
    )
      await sleep(50);
    await sleep(500);
    await rename(dir, moved);
    await symlink('/etc', dir);
    const r = await child;
    expect(r.exitCode).toBe(1);
    const last = String(r.stderr).trimEnd().split('\n').at(-1)!;
    expect(last).toMatch(/symbolic link|changed|not the directory|replaced|vanished/i);
    expect((await lstat(dir)).isSymbolicLink()).toBe(true);
    expect(await describeTree(moved)).toEqual(before);
    expect(await datasetNames()).not.toContain(`${p.pool}/${name}`);
    expect(await exported()).not.toContain(dir);
    await rm(dir);
    await invariants();
  });
});
