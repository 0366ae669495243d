/**
 * Never lose a byte, part 2: people keep writing while the directory is converted.
 * Whatever they wrote ends up in the new dataset, in order, none missing.
 */
import { lstat, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cliSpawn, createPool, datasets, fastPlugins, type TestPool } from '../helpers/zfs.js';
import { unprivilegedCreator } from '../helpers/writers.js';
import { scaled } from '../helpers/time.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { leftovers, run, stagingPath, writeNamedConfig } from './safety-helpers.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('writers', 256);
});
afterAll(async () => {
  await p?.destroy();
});

/** A child that appends a numbered line every 20 ms to `file` through one descriptor opened now, until SIGTERM. */
function appender(file: string) {
  const script = `
    const fs = require('fs');
    const fd = fs.openSync(process.argv[1], 'a');
    let n = 0;
    const timer = setInterval(() => { fs.writeSync(fd, 'line ' + (n++) + '\\n'); }, 20);
    process.on('SIGTERM', () => { clearInterval(timer); fs.fsyncSync(fd); fs.closeSync(fd); process.stdout.write(String(n)); process.exit(0); });
    process.stdout.write('ready\\n');
  `;
  return execa(process.execPath, ['-e', script, file], { cwd: '/', reject: false, buffer: true });
}

describe('writers during the conversion', () => {
  it('an open descriptor appending all along: every line ends up in the dataset, in order', async () => {
    const dir = join(p.mount, 'appending');
    await makeTree(dir, 10);
    const file = join(dir, 'log.txt');
    const writer = appender(file);
    await new Promise<void>((resolve) => writer.stdout!.once('data', () => resolve()));
    const config = await writeNamedConfig(
      p,
      'appending.json',
      fastPlugins({
        quiet: { quietSeconds: 0, checkOpenFiles: false },
        rsync: { graceSeconds: 2, maxGraceSeconds: scaled(60_000) / 1000 },
      }),
    );
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    onTestFinished(() => {
      writer.kill('SIGKILL');
      job.kill('SIGKILL');
    });
    // Let the conversion run into its cleanup while the writer writes to the original, moved aside.
    const aside = stagingPath(p, 'appending', 'orig');
    let sawAside = false;
    for (const deadline = Date.now() + scaled(30_000); !sawAside && Date.now() < deadline;) {
      sawAside = await lstat(aside).then(
        () => true,
        () => false,
      );
      if (!sawAside) await sleep(20);
    }
    expect(sawAside).toBe(true);
    // Keep writing until the cleanup has been waiting for a while: past the swap's catch-up rounds.
    let log = '';
    job.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    for (
      const deadline = Date.now() + scaled(60_000);
      !/still hold files in the original/.test(log) && job.exitCode === null && Date.now() < deadline;
    )
      await sleep(100);
    await sleep(3000);
    // The writer still holds the original: the cleanup must still be waiting.
    expect(job.exitCode).toBeNull();
    expect(log).toMatch(/waiting: .* still hold files in the original/);
    expect(
      await lstat(aside).then(
        () => true,
        () => false,
      ),
    ).toBe(true);
    writer.kill('SIGTERM');
    const written = Number((await writer).stdout.replace('ready\n', ''));
    expect(written).toBeGreaterThan(100);
    const r = await job;
    expect(r.exitCode).toBe(0);
    expect(String(r.stderr)).toContain('converted into');

    const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
    expect(lines.length).toBe(written);
    expect(lines).toEqual(Array.from({ length: written }, (_, i) => `line ${i}`));
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/appending`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });

  it('files created after the copy began are all in the dataset (a plugin writes right after the copy)', async () => {
    const dir = join(p.mount, 'late files');
    await makeTree(dir, 10);
    const plugin = join(p.work, 'late-writer.mjs');
    await writeFile(
      plugin,
      `import { writeFileSync, appendFileSync } from 'node:fs';
       export default { name: 'late-writer', apply(hooks) {
         hooks.migrate.tapPromise({ name: 'late-writer', stage: 100 }, async (job) => {
           for (let i = 0; i < 20; i++) writeFileSync(job.path + '/late' + i + '.txt', 'late ' + i + '\\n');
           appendFileSync(job.path + '/d0/f0.dat', 'appended after the copy');
         });
       } };`,
    );
    const config = await writeNamedConfig(p, 'late.json', fastPlugins({ more: [plugin] }));
    const r = await run(['--config', config, 'handle', dir], p.stateDir);
    expect(r.stderr).toContain('converted into');
    expect(r.exitCode).toBe(0);
    const names = await readdir(dir);
    for (let i = 0; i < 20; i++) {
      expect(names).toContain(`late${i}.txt`);
      expect(await readFile(join(dir, `late${i}.txt`), 'utf8')).toBe(`late ${i}\n`);
    }
    expect(await readFile(join(dir, 'd0', 'f0.dat'), 'utf8')).toMatch(/appended after the copy$/);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/late files`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });

  it('a process creating files all through the conversion: every file it made is in the dataset', async () => {
    const dir = join(p.mount, 'creating');
    await makeTree(dir, 200, 20_000);
    // As the directory's owner, as an instrument writes (see test/helpers/writers.ts). The pace scales
    // with the time (the guest lane): as many files as on a real machine, over as much of the run.
    const creator = await unprivilegedCreator(dir, scaled(10), scaled(6000));
    await sleep(200);
    const config = await writeNamedConfig(
      p,
      'creating.json',
      fastPlugins({ quiet: { quietSeconds: 0, checkOpenFiles: false }, rsync: { graceSeconds: 1 } }),
    );
    const job = run(['--config', config, 'handle', dir], p.stateDir);
    const made = await creator.made;
    const r = await job;
    expect(r.stderr).toContain('converted into');
    expect(r.exitCode).toBe(0);
    expect(made.length).toBeGreaterThan(100);
    const tree = await describeTree(dir);
    const missing = made.filter((name) => !tree.has(name));
    expect(missing).toEqual([]);
    for (const name of made) expect(await readFile(join(dir, name), 'utf8')).toBe(`content of ${name}`);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/creating`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});
