/**
 * Names ZFS forbids, on a real pool (issue 20): refused once and left whole by default; with the
 * zfs plugin's option mapNames, converted into a dataset of a mapped name, mounted at the
 * directory's own path, its name recorded on the dataset and shown by history; a directory whose
 * own name is another's mapped name is refused, never given the other's dataset; a conversion
 * killed past its commit point is finished by recover from the dataset alone (no journal, and
 * mapNames off by then), which finds it by its recorded name.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapName } from '../../plugins/zfs/names.js';
import { cli, createPool, datasets, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';

let p: TestPool;
beforeAll(async () => {
  p = await createPool('names', 256);
});
afterAll(async () => {
  await p?.destroy();
});

const HASH = 'run#1 @lab';
const UTF8 = 'Lauf über Nacht';
/** Names a hostile user might hope a mountpoint, a command or an exports line would read otherwise. */
const HOSTILE = ['$(touch zdc-pwned)', 'x *(rw,no_root_squash)', 'back\\slash "q"'];

async function makeRun(name: string): Promise<void> {
  await mkdir(join(p.mount, name, 'sub'), { recursive: true });
  await writeFile(join(p.mount, name, 'data.txt'), `the data of ${name}\n`);
  await writeFile(join(p.mount, name, 'sub', 'more.bin'), Buffer.alloc(4096, 7));
}

async function expectWhole(name: string): Promise<void> {
  expect(await readFile(join(p.mount, name, 'data.txt'), 'utf8')).toBe(`the data of ${name}\n`);
  expect((await readFile(join(p.mount, name, 'sub', 'more.bin'))).equals(Buffer.alloc(4096, 7))).toBe(true);
}

describe('names ZFS forbids', () => {
  it('without mapNames: refused once, with one clear line, and left whole', async () => {
    const config = await writeConfig(p, fastPlugins(), {}, 'plain.json');
    await makeRun(HASH);
    const first = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(first.exitCode, first.stderr).toBe(0);
    const lines = first.stderr.split('\n').filter((l) => l.includes(HASH));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/WARNING.*cannot become a ZFS dataset: it holds "#".*mapNames: true would map it.*left as it is/);
    const second = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stderr).not.toContain(HASH);
    expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);
    await expectWhole(HASH);
  });

  it('with mapNames: converted into the mapped dataset, mounted at its own path, its name on the dataset and in history', async () => {
    const config = await writeConfig(p, fastPlugins({ zfs: { mapNames: true } }), {}, 'mapped.json');
    for (const name of [UTF8, ...HOSTILE]) await makeRun(name);
    const r = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(existsSync('/zdc-pwned')).toBe(false);
    for (const name of [HASH, UTF8, ...HOSTILE]) {
      const dataset = `${p.pool}/${mapName(p.pool, name)!}`;
      const row = (await datasets(p.pool)).find((d) => d.name === dataset);
      expect(row, `${dataset} in ${r.stderr}`).toMatchObject({ mountpoint: join(p.mount, name), mounted: 'yes', state: 'live' });
      expect((await stat(join(p.mount, name))).dev).not.toBe((await stat(p.mount)).dev);
      await expectWhole(name);
      const named = await zfs('get', '-H', '-o', 'value', 'org.zfs-dynamic-creator:name', dataset);
      expect(decodeURIComponent(named)).toBe(name);
    }
    // Nothing was made at the mapped names' own paths.
    expect((await readdir(p.mount)).filter((n) => !n.startsWith('.')).sort()).toEqual([HASH, UTF8, ...HOSTILE].sort());

    const again = await cli(['--config', config, 'reconcile', '--json'], { stateDir: p.stateDir });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/WARNING|ERROR/);

    const h = await cli(['--config', config, 'history', '--json'], { stateDir: p.stateDir });
    expect(h.exitCode, h.stderr).toBe(0);
    const conversions = (JSON.parse(h.stdout) as { roots: { conversions: Record<string, unknown>[] }[] }).roots[0]!.conversions;
    expect(conversions.map((c) => [c.originalName, c.mountpoint]).sort()).toEqual(
      [HASH, UTF8, ...HOSTILE].map((n) => [n, join(p.mount, n)]).sort(),
    );
    const text = await cli(['--config', config, 'history'], { stateDir: p.stateDir });
    expect(text.stdout).toContain(`named "${HASH}"`);
  });

  it("a directory named like another's mapped dataset is refused and left whole", async () => {
    const config = await writeConfig(p, fastPlugins({ zfs: { mapNames: true } }), {}, 'mapped.json');
    const taken = mapName(p.pool, HASH)!;
    await makeRun(taken);
    const r = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/WARNING.*cannot become .*that dataset belongs to the directory "run#1 @lab"; left as it is/);
    await expectWhole(taken);
    expect((await stat(join(p.mount, taken))).dev).toBe((await stat(p.mount)).dev);
    expect((await datasets(p.pool)).find((d) => d.name === `${p.pool}/${taken}`)?.mountpoint).toBe(join(p.mount, HASH));
  });

  it('killed past its commit point, with its journal lost: recover finds the dataset by its recorded name and finishes it', async () => {
    const name = 'crash @1';
    await makeRun(name);
    const killing = fastPlugins({ zfs: { mapNames: true }, more: [['fault-injection', { killAt: 'swap/mount-in-place', names: [name] }]] });
    const killed = await cli(['--config', await writeConfig(p, killing, {}, 'kill.json'), 'handle', join(p.mount, name)], {
      stateDir: p.stateDir,
    });
    expect(killed.stderr).toContain('fault injection: sending SIGKILL');
    const dataset = `${p.pool}/${mapName(p.pool, name)!}`;
    expect((await datasets(p.pool)).find((d) => d.name === dataset)?.state).toBe('swapped');
    await rm(p.stateDir, { recursive: true, force: true });
    const plain = await writeConfig(p, fastPlugins(), {}, 'plain.json');
    const r = await cli(['--config', plain, 'recover'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await datasets(p.pool)).find((d) => d.name === dataset)).toMatchObject({
      mountpoint: join(p.mount, name),
      mounted: 'yes',
      state: 'live',
    });
    await expectWhole(name);
  });
});
