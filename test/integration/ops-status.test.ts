/**
 * status tells the truth, through the real CLI on a real pool: a job whose process was killed is
 * "interrupted" with the exact command that finishes it (not "running"), a job whose process
 * lives is "running", the kept original is shown with its path, and a directory the filters
 * leave alone is not "waiting" but "ignored" with the filter's reason. The runs: a waiting, a
 * stalled and a converted one, each with its state and since when, in status and in the metrics
 * textfile (which promtool accepts after the stall); a sweep forgets the run of a directory gone.
 */
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExposition, sampleValue } from '../helpers/prom.js';
import { cli, cliSpawn, createPool, writeConfig, type TestPool } from '../helpers/zfs.js';
import { makeTree } from '../helpers/tree.js';
import { leftovers, run, stagingPath, writeNamedConfig } from './safety-helpers.js';

let p: TestPool;

const plugins = (more: unknown[] = []): unknown[] => [
  ['name-filter', { exclude: '^scratch' }],
  ['quiet-wait', { quietSeconds: 0.2, maxWaitSeconds: 30 }],
  'zfs',
  ['rsync', { graceSeconds: 0.2, maxGraceSeconds: 30 }],
  ...more,
];

interface StatusJson {
  roots: {
    waiting: string[];
    ignored: { name: string; reason: string; refused: boolean }[];
    jobs: { name: string; status: string; recorded: string; pid: number; phase: string; aside?: string; recover?: string }[];
  }[];
}

beforeAll(async () => {
  p = await createPool('status');
});
afterAll(async () => {
  await p?.destroy();
});

describe('status', () => {
  it('a directory the name filter excludes is ignored (with the reason), not waiting', async () => {
    const config = await writeNamedConfig(p, 'plain.json', plugins());
    await mkdir(join(p.mount, 'scratch-1'));
    await mkdir(join(p.mount, 'run-1'));
    await mkdir(join(p.mount, '.hidden'));
    const r = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    const root = (JSON.parse(r.stdout) as StatusJson).roots[0]!;
    expect(root.waiting).toEqual(['run-1']);
    expect(root.ignored).toEqual([
      { name: '.hidden', reason: 'hidden name (starts with ".")', refused: false },
      { name: 'scratch-1', reason: 'name matches the exclusion ^scratch', refused: false },
    ]);
    const text = await cli(['--config', config, 'status'], { stateDir: p.stateDir });
    expect(text.stdout).toContain('1 directory(ies) waiting, 2 skipped by the filters');
    expect(text.stdout).toMatch(/^ {2}waiting +"run-1"$/m);
    expect(text.stdout).toMatch(/^ {2}skipped +"scratch-1" \(name matches the exclusion \^scratch\)$/m);
    expect(text.stdout).not.toMatch(/waiting +"scratch-1"/);
    // Nothing was done to them: no journal, no lock, no dataset.
    expect(await leftovers(p)).toEqual([]);
  });

  it('a job whose process is alive is running; one SIGKILLed mid-way is interrupted, with the command that finishes it and where the original is kept', async () => {
    const name = 'run-1';
    await makeTree(join(p.mount, name), 20, 2000);
    // Paused after the original was moved aside, then killed: the lock is held while it pauses.
    const config = await writeNamedConfig(
      p,
      'kill.json',
      plugins([['fault-injection', { killAt: 'swap/move-aside', when: 'after', pauseSeconds: 4, names: [name] }]]),
    );
    const child = cliSpawn(['--config', config, 'handle', join(p.mount, name)], { stateDir: p.stateDir });
    let running: StatusJson['roots'][0]['jobs'][0] | undefined;
    for (let i = 0; i < 200 && running?.phase !== 'swap'; i++) {
      const s = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir })).stdout) as StatusJson;
      running = s.roots[0]!.jobs.find((j) => j.name === name);
      if (running?.phase !== 'swap') await sleep(100);
    }
    expect(running).toMatchObject({ status: 'running', recorded: 'running', phase: 'swap' });
    expect(running!.recover).toBeUndefined();
    const pid = child.pid!;
    const killed = await child;
    expect(killed.signal).toBe('SIGKILL');

    const r = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    const root = (JSON.parse(r.stdout) as StatusJson).roots[0]!;
    const aside = stagingPath(p, name, 'orig');
    const command = `ZFS_DYNAMIC_CREATOR_STATE_DIR=${p.stateDir} zfs-dynamic-creator recover --config ${config}`;
    expect(root.jobs).toMatchObject([{ name, status: 'interrupted', recorded: 'running', phase: 'swap', pid, aside, recover: command }]);
    expect(root.waiting).toEqual([]);

    const text = await cli(['--config', config, 'status'], { stateDir: p.stateDir });
    expect(text.stdout).toContain(
      `  interrupted  "run-1" phase swap, its process (pid ${pid}) is gone; the original is kept at ${JSON.stringify(aside)}; finish it with: ${command}`,
    );
    expect(text.stdout).not.toMatch(/running/);

    // The command it gives does finish the job (the state dir as the test runs it).
    const recovered = await run(['recover', '--config', config], p.stateDir);
    expect(recovered.exitCode, recovered.stderr).toBe(0);
    const after = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir })).stdout) as StatusJson;
    expect(after.roots[0]!.jobs).toEqual([]);
    expect(await leftovers(p)).toEqual([]);
  });

  it('a job whose cleanup was left to a later run (handle --no-wait) is cleanup-pending, with where the original is kept', async () => {
    const config = await writeNamedConfig(p, 'plain.json', plugins());
    const name = 'run-2';
    await makeTree(join(p.mount, name), 5, 100);
    const r = await cli(['--config', config, 'handle', '--no-wait', join(p.mount, name)], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    const root = (JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir })).stdout) as StatusJson)
      .roots[0]!;
    const aside = stagingPath(p, name, 'orig');
    expect(root.jobs).toMatchObject([{ name, status: 'cleanup-pending', recorded: 'cleanup-pending', aside }]);
    const text = await cli(['--config', config, 'status'], { stateDir: p.stateDir });
    expect(text.stdout).toMatch(
      new RegExp(
        `^  cleanup-pending "run-2" phase \\w+, committed, live and published, its cleanup left to the next run for the root; the original is kept at ${JSON.stringify(aside).replace(/[.]/g, '\\.')}; finish it with: `,
        'm',
      ),
    );
    expect((await run(['recover', '--config', config], p.stateDir)).exitCode).toBe(0);
    expect(await leftovers(p)).toEqual([]);
  });

  it('runs without rsync: the root says why it cannot be surveyed, and its journal is still shown', async () => {
    const config = await writeNamedConfig(p, 'plain.json', plugins());
    const bin = await mkdtemp(join(tmpdir(), 'zdc-bin-'));
    try {
      for (const tool of ['zfs', 'zpool', 'flock']) await symlink((await execa('which', [tool])).stdout.trim(), join(bin, tool));
      const r = await cli(['--config', config, 'status'], { stateDir: p.stateDir, env: { PATH: bin } });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toContain(
        `${p.mount} (${p.pool}): cannot be surveyed: rsync not found: install it or put it on PATH; 0 job(s) in the journal`,
      );
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  it('every --json output is one object in the same envelope: version and command first', async () => {
    const config = await writeNamedConfig(p, 'plain.json', plugins());
    for (const command of ['status', 'list-plugins', 'reconcile', 'recover', 'history', 'doctor']) {
      const r = await cli(['--config', config, command, '--json'], { stateDir: p.stateDir });
      expect({ command, exitCode: r.exitCode, stderr: r.stderr }).toMatchObject({ command, exitCode: 0 });
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(Object.keys(out).slice(0, 3)).toEqual(['version', 'command', 'config']);
      expect(out).toMatchObject({ version: 1, command, config });
    }
    // recover without a config and with nothing in the journal: the same envelope, no results.
    const bare = await cli(['recover', '--json'], { stateDir: join(p.work, 'empty-state') });
    expect(bare.exitCode, bare.stderr).toBe(0);
    expect(JSON.parse(bare.stdout)).toEqual({ version: 1, command: 'recover', config: null, results: [] });
  });
});

/**
 * A site's completion policy in miniature: a run named wait-* waits for its DONE marker, one
 * named stall-* is stalled; the others are converted as usual.
 */
const SITE_POLICY = `export default {
  name: 'site-policy',
  apply(hooks) {
    hooks.wait.tapPromise('site-policy', async (job) => {
      if (job.name.startsWith('wait-')) {
        await job.root.runs.note(job.name, { kind: 'waiting', note: 'for DONE', policy: 'site' });
        return { defer: 'no DONE yet', waiting: true, recheckSeconds: 60 };
      }
      if (job.name.startsWith('stall-')) {
        await job.root.runs.note(job.name, { kind: 'stalled', since: '2026-01-01T00:00:00.000Z', note: 'no DONE, not written to for 24 h', policy: 'site' });
        return { defer: 'stalled', waiting: true, recheckSeconds: 60 };
      }
      return undefined;
    });
  },
};
`;

interface RunsJson {
  roots: {
    runs: {
      name: string;
      state: string;
      since: string;
      stalledSince?: string;
      dataset?: string;
      convertedAt?: string;
      note?: string;
      policy?: string;
    }[];
    runCounts: Record<string, number>;
    runsOmitted: number;
  }[];
}

describe('runs', () => {
  // A pool of its own: the jobs above have runs too.
  let q: TestPool;
  beforeAll(async () => {
    q = await createPool('runs');
  });
  afterAll(async () => {
    await q?.destroy();
  });

  it('status and the textfile show a waiting, a stalled and a converted run with since when; promtool accepts it after the stall; a sweep forgets a run gone', async () => {
    const plugin = join(q.work, 'site-policy.mjs');
    await writeFile(plugin, SITE_POLICY, { mode: 0o644 });
    const textfile = join(q.work, 'runs.prom');
    const config = await writeConfig(q, [plugin, ...plugins()], { metrics: { textfile } }, 'runs.json');
    for (const name of ['wait-1', 'stall-1', 'conv-1']) {
      await mkdir(join(q.mount, name));
      await writeFile(join(q.mount, name, 'a'), name);
    }
    const before = new Date().toISOString();
    for (const [name, exit] of [
      ['conv-1', 0],
      ['wait-1', 75],
      ['stall-1', 75],
    ] as const) {
      const r = await cli(['--config', config, 'handle', join(q.mount, name)], { stateDir: q.stateDir });
      expect(r.exitCode, `${name}: ${r.stderr}`).toBe(exit);
    }
    const after = new Date().toISOString();

    const s = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: q.stateDir })).stdout) as RunsJson;
    const root = s.roots[0]!;
    expect(root.runCounts).toEqual({ waiting: 1, stalled: 1, converting: 0, converted: 1, complete: 0, aborted: 0 });
    expect(root.runsOmitted).toBe(0);
    expect(root.runs.map((r) => [r.name, r.state])).toEqual([
      ['stall-1', 'stalled'],
      ['wait-1', 'waiting'],
      ['conv-1', 'converted'],
    ]);
    const [stalled, waiting, converted] = root.runs as [
      RunsJson['roots'][0]['runs'][0],
      RunsJson['roots'][0]['runs'][0],
      RunsJson['roots'][0]['runs'][0],
    ];
    expect(stalled).toMatchObject({ stalledSince: '2026-01-01T00:00:00.000Z', note: 'no DONE, not written to for 24 h', policy: 'site' });
    expect(waiting).toMatchObject({ note: 'for DONE', policy: 'site' });
    expect(converted).toMatchObject({ dataset: `${q.pool}/conv-1` });
    for (const r of root.runs) expect(r.since >= before && r.since <= after, `${r.name} since ${r.since}`).toBe(true);
    expect(converted.convertedAt).toBe(converted.since);

    const text = (await cli(['--config', config, 'status'], { stateDir: q.stateDir })).stdout;
    expect(text).toContain('1 run(s) stalled (need attention)');
    expect(text).toMatch(/^ {2}runs: 1 waiting, 1 stalled, 1 converted$/m);
    expect(text).toMatch(
      /^ {2}stalled +"stall-1" needs attention: no DONE, not written to for 24 h \(stalled since \S+, last written to \S+; policy site\)$/m,
    );
    expect(text).toMatch(/^ {2}waiting +"wait-1" since \S+: for DONE \(policy site\)$/m);
    expect(text).not.toMatch(/^ {2}waiting +"wait-1"$/m);

    // The textfile as the last job, the stalled run's (not counted as an outcome), left it.
    const prom = await readFile(textfile, 'utf8');
    const check = await execa('promtool', ['check', 'metrics'], { input: prom, reject: false });
    expect(`${check.exitCode} ${check.stdout}${check.stderr}`.trim()).toBe('0');
    const families = parseExposition(prom);
    const runs = (state: string): number | undefined => sampleValue(families, 'zfs_dynamic_creator_runs', { root: q.mount, state });
    expect([runs('waiting'), runs('stalled'), runs('converted'), runs('complete')]).toEqual([1, 1, 1, 0]);
    expect(sampleValue(families, 'zfs_dynamic_creator_oldest_stalled_run_timestamp_seconds', { root: q.mount })).toBe(
      Date.UTC(2026, 0, 1) / 1000,
    );
    expect(sampleValue(families, 'zfs_dynamic_creator_oldest_waiting_run_timestamp_seconds', { root: q.mount })).toBe(
      Math.floor(Date.parse(waiting.since) / 1000),
    );

    // The directory of the waiting run is removed: the next sweep forgets its run, and the textfile says so.
    await rm(join(q.mount, 'wait-1'), { recursive: true });
    const swept = await cli(['--config', config, 'reconcile'], { stateDir: q.stateDir });
    expect(swept.exitCode, swept.stderr).toBe(0);
    const later = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: q.stateDir })).stdout) as RunsJson;
    expect(later.roots[0]!.runs.map((r) => r.name)).toEqual(['stall-1', 'conv-1']);
    expect(
      sampleValue(parseExposition(await readFile(textfile, 'utf8')), 'zfs_dynamic_creator_runs', { root: q.mount, state: 'waiting' }),
    ).toBe(0);
  });
});
