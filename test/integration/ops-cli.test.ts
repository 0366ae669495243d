/**
 * Operating it (issue 11), through the real CLI on a real pool: subcommands never fall into the
 * original positional form, usage errors exit 2, --help shows examples and exit codes, the man
 * page covers every command, check-config, the 2-argument mode's summary, dry runs say "would
 * convert", timestamps on stderr, journald priorities and no duplicate through syslog, SIGTERM
 * during a copy as a clean stop, and a closed stderr or stdout that never interrupts a job.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/program.js';
import { manPage } from '../../src/man.js';
import { CLI, PROJECT, cli, cliEnv, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { LINE_START, TIME, startSyslogReceiver } from '../helpers/log.js';
import { describeTree, makeTree } from '../helpers/tree.js';

let p: TestPool;
let config: string;
let receiver: { stop(): Promise<void> } | undefined;
let socket: string;
let received: string;

beforeAll(async () => {
  p = await createPool('opscli');
  config = await writeConfig(p, fastPlugins());
  socket = join(p.work, 'log.sock');
  received = join(p.work, 'received.log');
  receiver = await startSyslogReceiver(socket, received);
});
afterAll(async () => {
  await receiver?.stop();
  await p?.destroy();
});

const COMMANDS = buildProgram(() => undefined).commands.map((c) => c.name());

/** Lines the syslog receiver got from now on: call the result to read them (waiting until `until` matches one, or a few seconds). */
async function syslogFromNow(): Promise<(until?: RegExp) => Promise<string[]>> {
  const offset = (await readFile(received).catch(() => Buffer.alloc(0))).length;
  return async (until) => {
    const read = async (): Promise<string[]> =>
      (await readFile(received).catch(() => Buffer.alloc(0))).subarray(offset).toString('utf8').split('\n').filter(Boolean);
    for (let i = 0; i < 50 && until !== undefined; i++) {
      if ((await read()).some((l) => until.test(l))) break;
      await sleep(100);
    }
    return read();
  };
}

async function state(name: string): Promise<string | undefined> {
  return (await datasets(p.pool)).find((d) => d.name === `${p.pool}/${name}`)?.state;
}

/**
 * Runs the CLI with stderr going to a file that JOURNAL_STREAM names (by device and inode), as
 * systemd does with StandardError=journal. The child is returned for signals; `done` is its exit.
 */
function asUnderSystemd(
  args: readonly string[],
  file: string,
  extraEnv: Record<string, string> = {},
): { child: ChildProcess; done: Promise<{ exitCode: number | null }> } {
  const fd = openSync(file, 'w');
  const s = fstatSync(fd);
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cliEnv(p.stateDir, { JOURNAL_STREAM: `${s.dev}:${s.ino}`, ...extraEnv }),
    cwd: '/',
    stdio: ['ignore', 'ignore', fd],
  });
  const done = new Promise<{ exitCode: number | null }>((resolve) =>
    child.once('exit', (code) => {
      closeSync(fd);
      resolve({ exitCode: code });
    }),
  );
  return { child, done };
}

/**
 * Runs the CLI with stderr (and stdout) pipes whose reading end is closed at once, as when the
 * reader goes away (`| head -1`, a dropped ssh session): every write after that fails with EPIPE.
 */
async function withClosedOutput(
  args: readonly string[],
  close: { stdout: boolean },
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(p.stateDir), cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.destroy();
  if (close.stdout) child.stdout.destroy();
  else child.stdout.resume();
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

describe('subcommands never fall into the original form', () => {
  it("help <command> shows that command's help, the same as <command> --help, with examples and exit codes", async () => {
    const viaHelp = await cli(['help', 'handle'], { stateDir: p.stateDir });
    const viaFlag = await cli(['handle', '--help'], { stateDir: p.stateDir });
    expect(viaHelp).toMatchObject({ exitCode: 0, stderr: '' });
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
    expect(viaHelp.stdout).toMatch(/^Usage: zfs-dynamic-creator handle \[options\] <dir>/);
    expect(viaHelp.stdout).toContain('Examples:\n  $ zfs-dynamic-creator handle /tank/runs/run42\n');
    expect(viaHelp.stdout).toMatch(
      /Exit status:\n {2}0 {3}converted.*\n {2}75 {2}deferred.*\n {2}2 {3}usage or configuration error.*\n {2}1 {3}failed/,
    );
  });

  it("every command's --help has examples and its exit codes", async () => {
    expect(COMMANDS).toEqual(
      expect.arrayContaining(['handle', 'recover', 'reconcile', 'watch', 'status', 'list-plugins', 'check-config', 'help']),
    );
    for (const name of [...COMMANDS, undefined]) {
      const r = await cli(name === undefined ? ['--help'] : [name, '--help'], { stateDir: p.stateDir });
      expect({
        name,
        exitCode: r.exitCode,
        examples: /\nExamples:\n {2}\$ zfs-dynamic-creator /.test(r.stdout),
        exits: /\nExit status:\n {2}0 /.test(r.stdout),
      }).toEqual({ name, exitCode: 0, examples: true, exits: true });
    }
  });

  it('a misspelt command gets "did you mean", exit 2, and nothing runs', async () => {
    const stateDir = join(p.work, 'never-made');
    for (const args of [
      ['reconsile'],
      ['reconsile', '--json'],
      ['--config', config, 'reconsile', '--root', p.mount],
      ['handel', join(p.mount, 'x')],
      ['stauts'],
      ['help', 'reconsile'],
    ]) {
      const r = await cli(args, { stateDir });
      expect({ args, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({
        args,
        exitCode: 2,
        stdout: '',
        stderr: expect.stringMatching(
          /^zfs-dynamic-creator: unknown command "(reconsile|handel|stauts)" \(did you mean (reconcile|handle|status)\?\)/,
        ),
      });
    }
    await expect(stat(stateDir)).rejects.toThrow(/ENOENT/);
  });

  it('usage errors exit 2: a bare word, a rootfs without an absolute rootdir, a missing or unknown argument or option', async () => {
    const cases: string[][] = [
      ['bogus'],
      [`${p.pool}/x`],
      [`${p.pool}/x`, 'relative'],
      ['handle'],
      ['handle', '--nope', 'x'],
      ['status', 'extra'],
      ['help', 'nothing-like-it'],
      [],
    ];
    for (const args of cases) {
      const r = await cli(args, { stateDir: p.stateDir });
      expect({ args, exitCode: r.exitCode, oneReason: r.stderr.trim().length > 0 }).toEqual({ args, exitCode: 2, oneReason: true });
    }
  });

  it('the original 4-argument form still converts, and a pool name that is a bare word still works', async () => {
    const dir = join(p.mount, 'orig4');
    await makeTree(dir, 3);
    const before = await describeTree(dir);
    const r = await cli(['--config', config, p.pool, p.mount, 'orig4', 'IN_CREATE,IN_ISDIR'], { stateDir: p.stateDir });
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({
      exitCode: 0,
      stderr: expect.stringContaining(`converted into ${p.pool}/orig4`),
    });
    expect(await state('orig4')).toBe('live');
    expect(await describeTree(dir)).toEqual(before);
  });
});

describe('the man page', () => {
  it('is built from the same definitions, shipped, covers every command, and renders without warnings', async () => {
    const file = join(PROJECT, 'man', 'zfs-dynamic-creator.1');
    const text = await readFile(file, 'utf8');
    expect(text).toBe(manPage());
    for (const name of COMMANDS)
      expect({ name, inPage: text.includes(`.SS "zfs\\-dynamic\\-creator ${name.replace(/-/g, '\\-')} `) }).toEqual({ name, inPage: true });
    expect(text).toContain('.SH EXIT STATUS');
    expect(text).toContain('zfs\\-dynamic\\-creator handle /tank/runs/run42');
    const pkg = JSON.parse(await readFile(join(PROJECT, 'package.json'), 'utf8')) as { files: string[]; man: string[] };
    expect(pkg.files).toContain('man');
    expect(pkg.man).toEqual(['./man/zfs-dynamic-creator.1']);
    const groff = await execa('groff', ['-man', '-Tutf8', '-ww', '-z', file], { reject: false });
    expect({ exitCode: groff.exitCode, stderr: groff.stderr }).toEqual({ exitCode: 0, stderr: '' });
    const rendered = await execa('man', ['-l', file], { env: { MANWIDTH: '100', MAN_KEEP_FORMATTING: '0' } });
    for (const name of COMMANDS) expect(rendered.stdout).toContain(`zfs-dynamic-creator ${name}`);
  });
});

describe('check-config', () => {
  it('says a good config is valid (exit 0) and creates nothing', async () => {
    // A root no instance serves yet (the pool's own root is served by the other tests' stateDir).
    const rootfs = `${p.pool}/check`;
    await execa('zfs', ['create', rootfs]);
    const rootdir = join(p.mount, 'check');
    const stateDir = join(p.work, 'check-state');
    const good = join(p.work, 'check.json');
    await writeFile(good, JSON.stringify({ stateDir, roots: [{ rootfs, rootdir, plugins: fastPlugins() }] }));
    const r = await cli(['--config', good, 'check-config'], { stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `config ${good}: valid; stateDir ${stateDir}; 1 root(s)\n  ${rootdir} (${rootfs}): name-filter, quiet-wait, zfs, rsync`,
    );
    await expect(stat(stateDir)).rejects.toThrow(/ENOENT/);
  });

  it('names the file and the key of a bad one, exit 2', async () => {
    const bad = join(p.work, 'check-bad.json');
    await writeFile(
      bad,
      JSON.stringify({ roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: [['quiet-wait', { quietSeconds: 'ten' }]] }] }),
    );
    const r = await cli(['--config', bad, 'check-config'], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`config ${bad}: roots[0].plugins[0][1]: quietSeconds:`);
    expect(r.stdout).toBe('');
  });
});

describe('the 2-argument mode and dry runs say what they did', () => {
  it("prints a summary line like reconcile's: the interrupted job it undid, and the exports", async () => {
    const name = 'interrupted';
    await makeTree(join(p.mount, name), 3);
    const before = await describeTree(join(p.mount, name));
    const killer = await writeConfig(p, fastPlugins({ more: [['fault-injection', { killAt: 'migrate', when: 'after', names: [name] }]] }));
    const killed = await cli(['--config', killer, 'handle', join(p.mount, name)], { stateDir: p.stateDir });
    expect(killed.exitCode).not.toBe(0);
    const r = await cli(['--config', config, p.pool, p.mount], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(
      `${p.mount} (${p.pool}): 1 rolled-back; exports not managed (no nfs-exports plugin, --add-export or --add-remove-all-exports)\n` +
        `  rolled-back ${JSON.stringify(name)}: recovery: rolled back an interrupted job that had not reached its commit point; the original directory is at its path, untouched`,
    );
    expect(await describeTree(join(p.mount, name))).toEqual(before);
    const again = await cli(['--config', config, p.pool, p.mount], { stateDir: p.stateDir });
    expect(again.stdout).toBe(
      `${p.mount} (${p.pool}): no interrupted job; exports not managed (no nfs-exports plugin, --add-export or --add-remove-all-exports)`,
    );
    // -q: nothing on stdout (cron mails whatever a job prints).
    const quiet = await cli(['-q', '--config', config, p.pool, p.mount], { stateDir: p.stateDir });
    expect(quiet).toMatchObject({ exitCode: 0, stdout: '', stderr: '' });
  });

  it('reconcile --dry-run says "would convert", never "converted", and converts nothing', async () => {
    const r = await cli(['--dry-run', '--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`${p.mount} (${p.pool}): 1 would convert`);
    expect(r.stdout).toContain(`  would convert "interrupted": dry run: would convert into ${p.pool}/interrupted; nothing was changed`);
    expect(r.stdout + r.stderr).not.toMatch(/\bconverted\b/);
    expect(await state('interrupted')).toBeUndefined();
  });
});

describe('logging', () => {
  it('every stderr line carries the local time when stderr is not the journal', async () => {
    await makeTree(join(p.mount, 'stamped'), 2);
    const started = Date.now();
    const r = await cli(['-v', '--config', config, 'handle', join(p.mount, 'stamped')], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) expect(line).toMatch(new RegExp(`^${LINE_START}(DEBUG|INFO|NOTICE|WARNING|ERROR): `));
    const times = lines.map((l) => new Date(l.slice(0, l.indexOf(' '))).getTime());
    expect(times.every((t, i) => i === 0 || t >= times[i - 1]!)).toBe(true);
    expect(times[0]!).toBeGreaterThanOrEqual(started - 1000);
    expect(times.at(-1)!).toBeLessThanOrEqual(Date.now() + 1000);
    // The end of the job sums it up: files, bytes, time and rate.
    expect(lines.at(-1)).toMatch(
      new RegExp(
        `^${TIME} zfs-dynamic-creator: NOTICE: \\[stamped\\] converted into ${p.pool}/stamped: [1-9][\\d,]* files?, \\d+\\.\\d MiB in \\d+\\.\\d s \\(copy \\d+\\.\\d s, \\d+\\.\\d MiB/s\\)$`,
      ),
    );
  });

  it('under systemd: <N> priorities, no time, and the syslog plugin sends nothing twice (journal: skip)', async () => {
    await makeTree(join(p.mount, 'journalled'), 2);
    const cfg = await writeConfig(p, fastPlugins({ more: [['syslog', { socket, tag: 'zdc-journal' }]] }));
    const file = join(p.work, 'journal-stderr.log');
    const lines = await syslogFromNow();
    const r = await asUnderSystemd(['--config', cfg, 'handle', join(p.mount, 'journalled')], file).done;
    expect(r.exitCode).toBe(0);
    const stderr = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
    expect(stderr.length).toBeGreaterThan(5);
    const priority: Record<string, string> = { DEBUG: '7', INFO: '6', NOTICE: '5', WARNING: '4', ERROR: '3' };
    for (const line of stderr) {
      const m = /^<(\d)>(DEBUG|INFO|NOTICE|WARNING|ERROR): /.exec(line);
      expect({ line, ok: m !== null && priority[m[2]!] === m[1] }).toEqual({ line, ok: true });
    }
    expect(stderr.filter((l) => l.startsWith(`<5>NOTICE: [journalled] converted into ${p.pool}/journalled: `))).toHaveLength(1);
    // Nothing of this run reached the syslog socket: journald passes the lines on itself.
    await sleep(500);
    expect((await lines()).filter((l) => l.includes('zdc-journal'))).toEqual([]);
  });

  it('under systemd with journal: send, the syslog plugin sends every line anyway; outside systemd it always does', async () => {
    await makeTree(join(p.mount, 'sent'), 2);
    const cfg = await writeConfig(p, fastPlugins({ more: [['syslog', { socket, tag: 'zdc-send', journal: 'send' }]] }));
    const lines = await syslogFromNow();
    const r = await asUnderSystemd(['--config', cfg, 'handle', join(p.mount, 'sent')], join(p.work, 'send-stderr.log')).done;
    expect(r.exitCode).toBe(0);
    const got = (await lines(/converted into/)).filter((l) => l.includes('zdc-send'));
    const stderr = (await readFile(join(p.work, 'send-stderr.log'), 'utf8')).split('\n').filter(Boolean);
    expect(got.length).toBe(stderr.length);
    expect(got.some((l) => l.includes(`outcome: converted into ${p.pool}/sent`))).toBe(true);

    await makeTree(join(p.mount, 'plain'), 2);
    const skipCfg = await writeConfig(p, fastPlugins({ more: [['syslog', { socket, tag: 'zdc-plain' }]] }));
    const more = await syslogFromNow();
    // JOURNAL_STREAM set, but stderr is not that stream (a redirected child): not the journal.
    const plain = await cli(['--config', skipCfg, 'handle', join(p.mount, 'plain')], {
      stateDir: p.stateDir,
      env: { JOURNAL_STREAM: '1:1' },
    });
    expect(plain.exitCode).toBe(0);
    expect(plain.stderr).toMatch(new RegExp(`^${LINE_START}`));
    const sent = (await more(/converted into/)).filter((l) => l.includes('zdc-plain'));
    expect(sent.length).toBe(plain.stderr.split('\n').filter(Boolean).length);
  });

  it('a closed stderr and stdout never interrupt a job; syslog still gets every line', async () => {
    for (const n of ['epipe 1', 'epipe 2']) await makeTree(join(p.mount, n), 40);
    const cfg = await writeConfig(p, fastPlugins({ more: [['syslog', { socket, tag: 'zdc-epipe' }]] }));
    const lines = await syslogFromNow();
    const r = await withClosedOutput(['-v', '--config', cfg, 'reconcile'], { stdout: true });
    expect(r).toEqual({ code: 0, signal: null });
    expect(await state('epipe 1')).toBe('live');
    expect(await state('epipe 2')).toBe('live');
    const got = (await lines(/epipe 2.*converted into/)).filter((l) => l.includes('zdc-epipe'));
    for (const n of ['epipe 1', 'epipe 2'])
      expect(got.filter((l) => l.includes(`(${p.pool}/${n}) outcome: converted into`))).toHaveLength(1);

    // handle too, with only stderr closed.
    await makeTree(join(p.mount, 'epipe 3'), 40);
    const more = await syslogFromNow();
    expect(await withClosedOutput(['-v', '--config', cfg, 'handle', join(p.mount, 'epipe 3')], { stdout: false })).toEqual({
      code: 0,
      signal: null,
    });
    expect(await state('epipe 3')).toBe('live');
    expect(
      (await more(/epipe 3.*converted into/)).some(
        (l) => l.includes('zdc-epipe') && l.includes(`outcome: converted into ${p.pool}/epipe 3`),
      ),
    ).toBe(true);
  });
});

describe('SIGTERM during a copy', () => {
  it('is a clean stop: logged at notice (<5> in the journal), rolled back, exit 75, no error line; converted later', async () => {
    const name = 'slow copy';
    const dir = join(p.mount, name);
    await mkdir(dir);
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(32 * 1024 * 1024, 7));
    await writeFile(join(dir, 'small.txt'), 'small\n');
    const before = await describeTree(dir);
    // The copy is rsync alone, slowed down (8 MB/s) so that the signal lands in it.
    const slow = await writeConfig(p, fastPlugins({ rsync: { parallelCopy: false, flags: ['-aHAX', '--numeric-ids', '--bwlimit=8M'] } }));
    const file = join(p.work, 'sigterm.log');
    const { child, done } = asUnderSystemd(['--config', slow, 'handle', dir], file);
    let log = '';
    for (let i = 0; i < 300 && !/\[slow copy\] copy /.test(log); i++) {
      await sleep(100);
      log = await readFile(file, 'utf8').catch(() => '');
    }
    expect(log).toMatch(/\[slow copy\] copy /);
    await sleep(800);
    child.kill('SIGTERM');
    const r = await done;
    expect(r.exitCode).toBe(75);
    const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
    expect(lines).toContain('<5>NOTICE: SIGTERM: stopping safely');
    expect(
      lines.some((l) =>
        /^<5>NOTICE: \[slow copy\] stopped during migrate: .*; rolled back, the original directory is untouched; it will be tried again$/.test(
          l,
        ),
      ),
    ).toBe(true);
    expect(lines.filter((l) => l.startsWith('<3>'))).toEqual([]);
    expect(await state(name)).toBeUndefined();
    expect(await describeTree(dir)).toEqual(before);

    const again = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(again.exitCode).toBe(0);
    expect(await state(name)).toBe('live');
    expect(await describeTree(dir)).toEqual(before);
    await rm(file, { force: true });
  });
});
