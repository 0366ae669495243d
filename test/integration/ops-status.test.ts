/**
 * status tells the truth, through the real CLI on a real pool: a job whose process was killed is
 * "interrupted" with the exact command that finishes it (not "running"), a job whose process
 * lives is "running", the kept original is shown with its path, and a directory the filters
 * leave alone is not "waiting" but "ignored" with the filter's reason.
 */
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliSpawn, createPool, type TestPool } from '../helpers/zfs.js';
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
