/**
 * Publishing with the real exportfs: drop-in file, /etc/exports block (the
 * original --add-export), sharenfs, maintenance mode, a file exportfs rejects,
 * an administrator's edit made while exportfs -r runs, and the original script's
 * unmarked lines under rootdir.
 * /etc/exports, our drop-in file and /var/lib/nfs/etab are put back afterwards.
 */
import { chmod, mkdir, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { escapePath } from '../../plugins/nfs-exports/exports.js';
import { DROP_IN, EXPORTS, exported, saveExportState } from '../helpers/exports.js';

let p: TestPool;
let restoreExports: () => Promise<void> = async () => undefined;
let unrelated: string;
let baseExports: string;

async function handle(config: string, dir: string) {
  return cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
}

/** The directory the first exports-file test publishes with --add-export. */
const ADDED = '140613_D00123_0001_AC123DEFXX';

/**
 * Our block in /etc/exports, as the first exports-file test leaves it: the later tests start from
 * it, and make it here when they run on their own.
 */
async function exportsBlockWritten(): Promise<void> {
  if ((await datasets(p.pool)).some((d) => d.name === `${p.pool}/${ADDED}`)) return;
  const config = await writeConfig(p, fastPlugins(), {}, 'exports-file.json');
  await makeTree(join(p.mount, ADDED), 3);
  const r = await cli(['--config', config, '--delay=0', '--add-export', p.pool, p.mount, ADDED, 'IN_CREATE,IN_ISDIR'], {
    stateDir: p.stateDir,
  });
  expect({ exitCode: r.exitCode, stderr: r.stderr }).toMatchObject({ exitCode: 0 });
}

beforeAll(async () => {
  restoreExports = await saveExportState();
  p = await createPool('publish');
  unrelated = join(p.work, 'unrelated export');
  await mkdir(unrelated);
  // The rootdir's own line (clients to inherit, with an fsid that must not be copied),
  // a continuation line, comments, and an export of something else.
  baseExports = [
    '# /etc/exports for the publish test',
    `${p.mount} 127.0.0.0/8(rw,no_subtree_check,fsid=77) \\`,
    '    127.0.0.2(ro,no_subtree_check)',
    '',
    `${escapePath(unrelated)} 127.0.0.3(ro,no_subtree_check)   # someone else's`,
    '',
  ].join('\n');
  await writeFile(EXPORTS, baseExports);
  await rm(DROP_IN, { force: true });
  await execa('exportfs', ['-r']);
});

afterAll(async () => {
  await p?.destroy();
  await restoreExports();
});

describe('drop-in mode (the default)', () => {
  let config: string;
  beforeAll(async () => {
    config = await writeConfig(p, fastPlugins({ more: ['nfs-exports'] }), {}, 'drop-in.json');
  });

  /** 'with space' converted and exported, by the first test or, when a test runs on its own, here. */
  async function withSpaceExported(): Promise<void> {
    if ((await datasets(p.pool)).some((d) => d.name === `${p.pool}/with space`)) return;
    const dir = join(p.mount, 'with space');
    await makeTree(dir, 5);
    expect(await handle(config, dir)).toMatchObject({ exitCode: 0, stderr: expect.stringContaining('converted into') });
  }

  it('exports a new filesystem with a space in its name, inheriting the root clients, /etc/exports untouched', async () => {
    const dir = join(p.mount, 'with space');
    await makeTree(dir, 5);
    const before = await describeTree(dir);
    const r = await handle(config, dir);
    expect(r.stderr).toContain('converted into');
    expect(r.exitCode).toBe(0);
    expect(await describeTree(dir)).toEqual(before);
    expect(await readFile(EXPORTS, 'utf8')).toBe(baseExports);
    const dropIn = await readFile(DROP_IN, 'utf8');
    expect(dropIn).toContain(`${p.mount}/with\\040space 127.0.0.0/8(rw,no_subtree_check) 127.0.0.2(ro,no_subtree_check)\n`);
    expect(dropIn).not.toContain('fsid');
    expect(await exported()).toEqual([p.mount, dir, unrelated].sort());
  });

  it('publishing again (sync) adds no second line', async () => {
    await withSpaceExported();
    const before = await readFile(DROP_IN, 'utf8');
    const r = await cli(['--config', config, p.pool, p.mount], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    expect(await readFile(DROP_IN, 'utf8')).toBe(before);
    expect(before.split('\n').filter((l) => l.startsWith(`${p.mount}/with\\040space `))).toHaveLength(1);
  });

  it('refuses, before changing anything, when the root has no line and no clients are configured', async () => {
    const empty = join(p.work, 'empty-exports');
    await writeFile(empty, '# nothing here\n');
    const cfg = await writeConfig(
      p,
      fastPlugins({ more: [['nfs-exports', { exportsFile: empty, dropInFile: join(p.work, 'x.exports') }]] }),
      {},
      'no-clients.json',
    );
    const dir = join(p.mount, 'noclients');
    await makeTree(dir, 2);
    const r = await handle(cfg, dir);
    expect(r.exitCode).toBe(1);
    const last = r.stderr.trim().split('\n').at(-1)!;
    expect(last).toMatch(/has no line in .*empty-exports.* to take NFS clients from, and the 'clients' option is not set/);
    expect((await stat(dir)).isDirectory()).toBe(true);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/noclients`);
    await rm(dir, { recursive: true });
  });

  it('says "exportfs not found" when exportfs is missing, and converts nothing', async () => {
    const cfg = await writeConfig(
      p,
      fastPlugins({ more: [['nfs-exports', { exportfsCommand: '/nonexistent/exportfs' }]] }),
      {},
      'no-exportfs.json',
    );
    const dir = join(p.mount, 'noexportfs');
    await makeTree(dir, 2);
    const r = await handle(cfg, dir);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('exportfs not found');
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/noexportfs`);
    await rm(dir, { recursive: true });
  });

  it('puts the previous file back when exportfs -r rejects the new one, and recover finishes later', async () => {
    // A previous version of the drop-in file to put back.
    await withSpaceExported();
    const cfg = await writeConfig(
      p,
      fastPlugins({ more: [['nfs-exports', { clients: '127.0.0.1(rw,no_subtree_check,bogus_option)' }]] }),
      {},
      'rejected.json',
    );
    const previous = await readFile(DROP_IN, 'utf8');
    const exportsBefore = await exported();
    const dir = join(p.mount, 'rejected');
    await makeTree(dir, 3);
    const data = await describeTree(dir);
    const r = await handle(cfg, dir);
    expect(r.exitCode).toBe(1);
    const last = r.stderr.trim().split('\n').at(-1)!;
    expect(last).toMatch(/publish failed: exportfs -r rejected the new .*bogus_option.*the previous version was restored/);
    expect(await readFile(DROP_IN, 'utf8')).toBe(previous);
    expect(await readFile(`${DROP_IN}.zfs-dynamic-creator.bak`, 'utf8')).toBe(previous);
    expect(await exported()).toEqual(exportsBefore);
    // The data is safe: the filesystem is live with everything in it.
    expect(await describeTree(dir)).toEqual(data);
    // Fixed config: recovery finishes the publish.
    const fixed = await writeConfig(p, fastPlugins({ more: ['nfs-exports'] }), {}, 'fixed.json');
    const rec = await cli(['--config', fixed, 'recover'], { stateDir: p.stateDir });
    expect(rec.exitCode).toBe(0);
    expect(await exported()).toEqual([...exportsBefore, dir].sort());
  });
});

describe('the original --add-export flags (exports-file mode)', () => {
  let config: string;
  beforeAll(async () => {
    config = await writeConfig(p, fastPlugins(), {}, 'exports-file.json');
  });

  it('--add-export writes a block in /etc/exports, keeping every other line', async () => {
    const name = ADDED;
    const dir = join(p.mount, name);
    await makeTree(dir, 3);
    const r = await cli(['--config', config, '--delay=0', '--add-export', p.pool, p.mount, name, 'IN_CREATE,IN_ISDIR'], {
      stateDir: p.stateDir,
    });
    expect(r.exitCode).toBe(0);
    const text = await readFile(EXPORTS, 'utf8');
    expect(text.startsWith(baseExports)).toBe(true);
    expect(text.slice(baseExports.length)).toBe(
      [
        `# BEGIN zfs-dynamic-creator ${p.mount}`,
        '# Managed by zfs-dynamic-creator (nfs-exports plugin): lines in this block are rewritten.',
        `${dir} 127.0.0.0/8(rw,no_subtree_check) 127.0.0.2(ro,no_subtree_check)`,
        `# END zfs-dynamic-creator ${p.mount}`,
        '',
      ].join('\n'),
    );
    expect(await readFile(`${EXPORTS}.zfs-dynamic-creator.bak`, 'utf8')).toBe(baseExports);
    expect(await exported()).toContain(dir);
  });

  it('--add-remove-all-exports in maintenance mode removes a stale line and adds a missing one', async () => {
    await exportsBlockWritten();
    // A filesystem made by hand (missing from the exports), and a stale line of ours.
    await zfs('create', `${p.pool}/made by hand`);
    const stale = `${p.mount}/gone`;
    const text = await readFile(EXPORTS, 'utf8');
    await writeFile(
      EXPORTS,
      text.replace(`# END zfs-dynamic-creator ${p.mount}`, `${stale} 127.0.0.1(ro)\n# END zfs-dynamic-creator ${p.mount}`),
    );
    const r = await cli(['--config', config, '--add-remove-all-exports', p.pool, p.mount], { stateDir: p.stateDir });
    expect(r.stderr).toContain('remove the stale export');
    expect(r.exitCode).toBe(0);
    const after = await readFile(EXPORTS, 'utf8');
    expect(after).not.toContain(stale);
    expect(after).toContain(`${p.mount}/made\\040by\\040hand `);
    expect(after.startsWith(baseExports)).toBe(true);
    // Every filesystem of the root is exported once, in the drop-in file or in /etc/exports.
    const live = (await datasets(p.pool)).filter((d) => d.name !== p.pool && d.mounted === 'yes').map((d) => d.mountpoint);
    expect(await exported()).toEqual([p.mount, unrelated, ...live].sort());
    // Run again: nothing changes.
    await cli(['--config', config, '--add-remove-all-exports', p.pool, p.mount], { stateDir: p.stateDir });
    expect(await readFile(EXPORTS, 'utf8')).toBe(after);
  });
});

describe("exports-file mode: edits by others, and the original script's lines", () => {
  /**
   * An exportfs that, on its first `-r`, appends `line` to /etc/exports (an administrator
   * editing it while exportfs runs), then runs the real exportfs.
   */
  async function editingExportfs(name: string, line: string): Promise<string> {
    const script = join(p.work, `exportfs-${name}`);
    const lineFile = join(p.work, `edit-${name}`);
    await writeFile(lineFile, `${line}\n`);
    await writeFile(
      script,
      [
        '#!/bin/sh',
        `if [ "$1" = "-r" ] && [ ! -e '${lineFile}.done' ]; then : > '${lineFile}.done'; cat '${lineFile}' >> ${EXPORTS}; fi`,
        'exec exportfs "$@"',
        '',
      ].join('\n'),
    );
    await chmod(script, 0o755);
    return script;
  }

  it('an edit made to /etc/exports while exportfs -r runs survives, whether exportfs rejects our change or accepts it', async () => {
    await exportsBlockWritten();
    const adminDir = join(p.work, 'admin one');
    const adminDir2 = join(p.work, 'admin two');
    await mkdir(adminDir);
    await mkdir(adminDir2);
    const adminLine = `${escapePath(adminDir)} 127.0.0.4(ro,no_subtree_check)`;
    const adminLine2 = `${escapePath(adminDir2)} 127.0.0.5(ro,no_subtree_check)   # edited while exportfs ran`;
    const before = await readFile(EXPORTS, 'utf8');
    const exportsBefore = await exported();
    // Our change is rejected (a bad option), and the administrator's line arrives in between.
    const bad = await writeConfig(
      p,
      fastPlugins({
        more: [
          [
            'nfs-exports',
            {
              mode: 'exports-file',
              clients: '127.0.0.1(rw,no_subtree_check,bogus_option)',
              exportfsCommand: await editingExportfs('reject', adminLine),
            },
          ],
        ],
      }),
      {},
      'edit-rejected.json',
    );
    const dir = join(p.mount, 'edited meanwhile');
    await makeTree(dir, 2);
    const r = await handle(bad, dir);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(
      /exportfs -r rejected the new \/etc\/exports .*bogus_option.*; our change was taken out again, keeping the edit someone else made meanwhile/,
    );
    expect(await readFile(EXPORTS, 'utf8')).toBe(`${before}${adminLine}\n`);
    expect(await exported()).toEqual([...exportsBefore, adminDir].sort());
    // Fixed config: recover publishes it; this time exportfs accepts, and another edit made during it stays too.
    const good = await writeConfig(
      p,
      fastPlugins({ more: [['nfs-exports', { mode: 'exports-file', exportfsCommand: await editingExportfs('accept', adminLine2) }]] }),
      {},
      'edit-accepted.json',
    );
    const rec = await cli(['--config', good, 'recover'], { stateDir: p.stateDir });
    expect(rec.exitCode).toBe(0);
    const end = `# END zfs-dynamic-creator ${p.mount}\n`;
    const ours = `${escapePath(dir)} 127.0.0.0/8(rw,no_subtree_check) 127.0.0.2(ro,no_subtree_check)\n`;
    expect(before).toContain(end);
    expect(await readFile(EXPORTS, 'utf8')).toBe(`${before.replace(end, `${ours}${end}`)}${adminLine}\n${adminLine2}\n`);
    expect(await exported()).toEqual([...exportsBefore, adminDir, adminDir2, dir].sort());
  });

  it("2-argument --add-remove-all-exports without a config: the original script's stale child line goes, its line for a dataset is updated in place, a new dataset is added, every other line stays byte for byte", async () => {
    await exportsBlockWritten();
    await zfs('create', `${p.pool}/seeded`);
    await zfs('create', `${p.pool}/brand new`);
    await mkdir(join(p.mount, 'seeded', 'sub'));
    const current = await readFile(EXPORTS);
    // What a site moving from the original script has: its unmarked lines for children of
    // the root (one whose directory is gone, one for a dataset, with other clients), among
    // lines of others: a comment with a byte that is not UTF-8, a deeper path, continued.
    const comment = Buffer.concat([Buffer.from('# moved from the original script, caf'), Buffer.from([0xe9]), Buffer.from('\n')]);
    const stale = Buffer.from(`${p.mount}/seed-gone 127.0.0.0/8(rw,no_subtree_check)\n`);
    const seeded = Buffer.from(`${p.mount}/seeded   127.0.0.9(ro,no_subtree_check)\n`);
    const rest = Buffer.from(`# after\n${p.mount}/seeded/sub 127.0.0.1(ro,no_subtree_check) \\\n    127.0.0.3(ro,no_subtree_check)\n`);
    await writeFile(EXPORTS, Buffer.concat([current, comment, stale, seeded, rest]));
    // The stale line makes exportfs -r fail on its missing path.
    expect((await execa('exportfs', ['-r'], { reject: false })).exitCode).not.toBe(0);

    const r = await cli(['--add-remove-all-exports', p.pool, p.mount], { stateDir: p.stateDir });
    expect(r.stderr).toContain(`remove the stale export of "${p.mount}/seed-gone"`);
    expect(r.exitCode).toBe(0);

    const clients = '127.0.0.0/8(rw,no_subtree_check) 127.0.0.2(ro,no_subtree_check)';
    const end = `# END zfs-dynamic-creator ${p.mount}\n`;
    const withNew = Buffer.from(current.toString('latin1').replace(end, `${p.mount}/brand\\040new ${clients}\n${end}`), 'latin1');
    const expected = Buffer.concat([withNew, comment, Buffer.from(`${p.mount}/seeded ${clients}\n`), rest]);
    expect((await readFile(EXPORTS)).toString('latin1')).toBe(expected.toString('latin1'));
    expect((await execa('exportfs', ['-r'], { reject: false })).exitCode).toBe(0);
    const now = await exported();
    for (const path of [`${p.mount}/brand new`, `${p.mount}/seeded`, `${p.mount}/seeded/sub`, unrelated]) expect(now).toContain(path);
    expect(now).not.toContain(`${p.mount}/seed-gone`);
  });
});

describe('sharenfs mode', () => {
  it('sets the sharenfs property on the new dataset', async () => {
    const config = await writeConfig(
      p,
      fastPlugins({ more: [['nfs-exports', { mode: 'sharenfs', sharenfs: 'rw=@127.0.0.1' }]] }),
      {},
      'sharenfs.json',
    );
    const before = await readFile(EXPORTS, 'utf8');
    const dir = join(p.mount, 'shared');
    await makeTree(dir, 2);
    const r = await handle(config, dir);
    expect(r.exitCode).toBe(0);
    expect((await zfs('get', '-H', '-o', 'value', 'sharenfs', `${p.pool}/shared`)).trim()).toBe('rw=@127.0.0.1');
    expect(await readFile(EXPORTS, 'utf8')).toBe(before);
  });
});
