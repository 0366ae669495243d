/**
 * The syslog plugin against a real receiver: a unix datagram socket this test
 * binds (as syslogd binds /dev/log), fed by the real `logger`.
 */
import { LINE_START, startSyslogReceiver } from '../helpers/log.js';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { makeTree } from '../helpers/tree.js';

let p: TestPool;
let receiver: { stop(): Promise<void> } | undefined;
let socket: string;
let received: string;

beforeAll(async () => {
  p = await createPool('syslog');
  socket = join(p.work, 'log.sock');
  received = join(p.work, 'received.log');
  receiver = await startSyslogReceiver(socket, received);
});

afterAll(async () => {
  await receiver?.stop();
  await p?.destroy();
});

/** Where the current test's lines start in the receiver's file. */
let offset = 0;
async function mark(): Promise<void> {
  offset = (await readFile(received).catch(() => Buffer.alloc(0))).length;
}

/** Lines received since mark(), waiting until `until` matches one (or a few seconds pass). */
async function lines(until: RegExp): Promise<string[]> {
  const read = async () =>
    (await readFile(received).catch(() => Buffer.alloc(0))).subarray(offset).toString('utf8').split('\n').filter(Boolean);
  for (let i = 0; i < 50; i++) {
    const all = await read();
    if (all.some((l) => until.test(l))) return all;
    await sleep(100);
  }
  return read();
}

describe('syslog', () => {
  it('sends one line per event, naming directory, dataset and step, with the tag and <PRI>', async () => {
    await mark();
    const config = await writeConfig(
      p,
      fastPlugins({ more: [['syslog', { socket, facility: 'local3', tag: 'zdc-test', level: 'info' }]] }),
    );
    const dir = join(p.mount, 'logged run');
    await makeTree(dir, 3);
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    const got = await lines(/converted into/);
    const dataset = `${p.pool}/logged run`;
    // local3 = 19: info 19*8+6 = 158, notice 157.
    for (const line of got) {
      expect(line).toMatch(/^<15[0-9]>/);
      expect(line).toMatch(/ zdc-test(\[\d+\])?: /);
    }
    const converted = got.filter((l) => l.includes('converted into'));
    expect(converted).toHaveLength(1);
    expect(converted[0]).toMatch(/^<157>/);
    expect(converted[0]).toContain(`${dir} (${dataset}) outcome: converted into ${dataset}`);
    // Each step that changed something is there, naming the directory, the dataset and the step.
    const create = got.filter((l) => / provision\/create\b/.test(l) || /\bcreate\b.*staging/.test(l));
    expect(create.length).toBeGreaterThan(0);
    expect(create[0]).toMatch(/^<158>/);
    expect(create[0]).toContain(`${dir} (${dataset}) `);
    const steps = got.filter((l) => / (provision|migrate|swap|cleanup)\/[a-z-]+: /.test(l));
    expect(steps.length).toBeGreaterThanOrEqual(5);
    for (const l of steps) expect(l).toContain(`: ${dir} (${dataset}) `);
    // Every line of stderr at info and above reached syslog, and no line more.
    const stderrLines = r.stderr.split('\n').filter((l) => new RegExp(`^${LINE_START}(INFO|NOTICE|WARNING|ERROR):`).test(l));
    expect(got).toHaveLength(stderrLines.length);
  });

  it('keeps a hostile name on one line', async () => {
    await mark();
    const config = await writeConfig(
      p,
      fastPlugins({ more: [['syslog', { socket, facility: 'daemon', severities: { warning: 'crit' } }]] }),
    );
    await mkdir(join(p.mount, 'two\nlines'));
    const r = await cli(['--config', config, 'handle', join(p.mount, 'two\nlines')], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(1);
    const got = await lines(/two\\nlines/);
    const failed = got.filter((l) => l.includes('two\\nlines'));
    expect(failed.length).toBeGreaterThan(0);
    // A refusal is a warning, mapped to crit here. daemon = 3, crit = 2: <26>
    expect(got.some((l) => l.startsWith('<26>'))).toBe(true);
    for (const l of got) expect(l).toMatch(/ zfs-dynamic-creator(\[\d+\])?: /);
  });
});
