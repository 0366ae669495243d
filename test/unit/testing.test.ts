/**
 * The plugin authors' test kit (src/testing.ts, the package's `zfs-dynamic-creator/testing`):
 * the example plugin of docs/plugins.md run through it, and what the kit keeps of the real
 * thing: the hooks' contract, the journal, job.set's rule, dry runs, the log. No ZFS.
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import * as z from 'zod';
import * as api from '../../src/index.js';
import { ContractError, definePlugin, type LogRecord } from '../../src/index.js';
import { testRoot, type TestRoot } from '../../src/testing.js';

/** The example of docs/plugins.md: skips temporary directories, stamps each new filesystem. */
const siteStamp = definePlugin({
  name: 'site-stamp',
  options: z.object({ file: z.string().default('.converted') }).strict(),
  apply(hooks, { options }) {
    hooks.filter.tap('site-stamp', (job) => (job.name.endsWith('.tmp') ? { skip: 'a temporary directory' } : undefined));
    hooks.publish.tapPromise('site-stamp', async (job) => {
      await job.step('stamp', `stamp ${job.path}`, () => writeFile(join(job.path, options.file), `${job.record.filesystem}\n`));
    });
  },
});

const PROJECT = resolve(import.meta.dirname, '..', '..');
let root: TestRoot | undefined;
afterEach(async () => {
  await root?.dispose();
  root = undefined;
});

describe('the test kit runs a plugin as the engine would', () => {
  it('applies it with its options checked, and says which hooks it tapped', async () => {
    root = await testRoot();
    expect(await root.use(siteStamp, { file: 'STAMP' })).toEqual(['filter', 'publish']);
    await expect(root.use(siteStamp, { fiel: 'STAMP' })).rejects.toThrow(/fiel/);
  });

  it('runs the filter, and the publish step: journalled, logged under the plugin, its file written', async () => {
    root = await testRoot({ dirs: ['run-1', 'run-2.tmp'] });
    await root.use(siteStamp);
    expect(await root.filter(await root.job('run-2.tmp'))).toEqual({ skip: 'a temporary directory' });
    const job = await root.job('run-1', { fields: { filesystem: 'tank/test/run-1' }, committed: true });
    expect(await root.filter(job)).toBeUndefined();
    await root.phase(job, 'publish');
    expect(await readFile(join(root.rootdir, 'run-1', '.converted'), 'utf8')).toBe('tank/test/run-1\n');
    expect(await root.journalled(job)).toMatchObject({ phase: 'publish', steps: [{ step: 'stamp', phase: 'publish', state: 'done' }] });
    expect(root.logs).toContainEqual(
      expect.objectContaining({ plugin: 'site-stamp', dir: 'run-1', step: 'publish/stamp', message: `stamp ${job.path}` }),
    );
    expect(root.messages('site-stamp')).toEqual([`stamp ${job.path}`]);
  });

  it('in a dry run the step is only described, nothing is journalled, and wait is not called', async () => {
    root = await testRoot({ dirs: ['run-1'], dryRun: true });
    await root.use(siteStamp);
    let waited = false;
    root.hooks.wait.tapPromise('waiter', async () => {
      waited = true;
      return undefined;
    });
    const job = await root.job('run-1');
    expect(await root.wait(job)).toBeUndefined();
    await root.phase(job, 'publish');
    expect(waited).toBe(false);
    expect(root.messages('site-stamp')).toEqual([`would stamp ${job.path}`]);
    await expect(access(join(root.rootdir, 'run-1', '.converted'))).rejects.toThrow(/ENOENT/);
    expect(await root.journalled(job)).toBeUndefined();
  });

  it("checks a tap's answer against the contract: a wrong shape is a ContractError naming the plugin", async () => {
    root = await testRoot({ dirs: ['d'] });
    root.hooks.filter.tap('sloppy', () => ({ skipped: true }) as never);
    await expect(root.filter(await root.job('d'))).rejects.toThrow(/^plugin "sloppy": its filter tap returned \{"skipped":true\}/);
  });

  it('journals the job fields a phase sets, and refuses one set in another phase (a ContractError naming the plugin)', async () => {
    root = await testRoot({ dirs: ['d'] });
    root.hooks.provision.tapPromise('fs', async (job) => job.set({ filesystem: `tank/test/${job.name}` }));
    root.hooks.migrate.tapPromise('fs', async (job) => job.set({ filesystem: 'tank/test/other' }));
    const job = await root.job('d');
    await root.phase(job, 'provision');
    expect(await root.journalled(job)).toMatchObject({ phase: 'provision', filesystem: 'tank/test/d' });
    const wrong = root.phase(job, 'migrate');
    await expect(wrong).rejects.toThrow(ContractError);
    await expect(wrong).rejects.toThrow(/^plugin "fs": job\.set\(\) of the job field "filesystem" in the migrate phase/);
  });

  it('hands every record to the log hook and every step to the step hook; outcome, rollback and close reach their taps', async () => {
    root = await testRoot({ dirs: ['d'] });
    await root.use(siteStamp);
    const heard: string[] = [];
    const records: LogRecord[] = [];
    root.hooks.log.tap('listener', (record) => void records.push(record));
    root.hooks.step.tapPromise('listener', async (_job, step, when) => void heard.push(`${step}:${when}`));
    root.hooks.outcome.tapPromise('listener', async (_job, outcome) => void heard.push(`outcome:${outcome.kind}`));
    root.hooks.rollback.tapPromise('listener', async (job, error) => void heard.push(`rollback:${job.phase}:${error.message}`));
    root.hooks.close.tapPromise('listener', async () => void heard.push('close'));
    const job = await root.job('d');
    await root.phase(job, 'publish');
    await root.outcome(job, 'converted');
    await root.rollback(job, new Error('broke'));
    await root.close();
    expect(heard).toEqual([
      'publish/stamp:before',
      'publish/stamp:end',
      'publish/stamp:after',
      'outcome:converted',
      'rollback:recover:broke',
      'close',
    ]);
    expect(records.map((r) => r.message)).toEqual(root.messages());
  });

  it('surveys from what it is given, and removes its temp directory when disposed', async () => {
    root = await testRoot({ rootfs: 'tank/lab' });
    root.hooks.survey.tapPromise('fs', async (survey, context) => {
      survey.filesystems.set('a', { mountpoint: `${context.rootdir}/a`, mounted: true, filesystem: `${context.rootfs}/a` });
      return survey;
    });
    const survey = await root.survey({ directories: new Set(['a', 'b']) });
    expect([...survey.directories]).toEqual(['a', 'b']);
    expect(survey.filesystems.get('a')).toEqual({ mountpoint: `${root.rootdir}/a`, mounted: true, filesystem: 'tank/lab/a' });
    const dir = root.dir;
    await root.dispose();
    await expect(access(dir)).rejects.toThrow(/ENOENT/);
  });

  it('is not part of the plugin API entry (which stays light)', () => {
    expect('testRoot' in api).toBe(false);
  });

  it("runs from the built package (zfs-dynamic-creator/testing, npm run build), sharing the API entry's classes", async () => {
    const script = `
      import { ContractError, definePlugin } from 'zfs-dynamic-creator';
      import { testRoot } from 'zfs-dynamic-creator/testing';
      const root = await testRoot({ dirs: ['d'] });
      await root.use(definePlugin({ name: 'fs', apply: (hooks) => hooks.migrate.tapPromise('fs', (job) => job.set({ filesystem: 'x' })) }));
      const error = await root.phase(await root.job('d'), 'migrate').catch((e) => e);
      await root.dispose();
      console.log(JSON.stringify({ contract: error instanceof ContractError, message: error.message }));`;
    const { stdout } = await execa(process.execPath, ['--input-type=module', '-e', script], { cwd: PROJECT });
    expect(JSON.parse(stdout)).toEqual({
      contract: true,
      message: expect.stringMatching(/^plugin "fs": job\.set\(\) of the job field "filesystem" in the migrate phase/),
    });
  });
});
