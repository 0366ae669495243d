/**
 * The syslog plugin through the test kit: the real `logger` sends the kit's log records to a unix
 * datagram socket this test binds (as syslogd binds /dev/log). The whole run through the CLI, and
 * the journal's double: test/integration/syslog.test.ts.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import syslog, { syslogLine } from '../../plugins/syslog/index.js';
import { testRoot, type TestRoot } from '../../src/testing.js';
import { startSyslogReceiver } from '../helpers/log.js';

let root: TestRoot | undefined;
let receiver: { stop(): Promise<void> } | undefined;
afterEach(async () => {
  await receiver?.stop();
  receiver = undefined;
  await root?.dispose();
  root = undefined;
});

/** The lines received, once `count` of them have arrived (or a few seconds passed). */
async function received(file: string, count: number): Promise<string[]> {
  const read = async () => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  for (let i = 0; i < 50 && (await read()).length < count; i++) await sleep(100);
  return read();
}

describe('syslog', () => {
  it('sends each record at or above its level, one line with its <PRI>, the tag, the directory, the dataset and the step', async () => {
    root = await testRoot({ dirs: ['run 1'] });
    const socket = join(root.dir, 'log.sock');
    const file = join(root.dir, 'received.log');
    receiver = await startSyslogReceiver(socket, file);
    // journal: send, so that a test run under systemd sends them too
    expect(await root.use(syslog, { socket, facility: 'local3', tag: 'zdc-kit', level: 'notice', journal: 'send' })).toEqual([
      'doctor',
      'log',
      'close',
    ]);
    const job = await root.job('run 1', { fields: { filesystem: 'tank/test/run 1' } });
    job.log.info('below the level');
    job.log.notice('copied', { step: 'migrate/copy' });
    job.log.error('broke', { step: 'swap' });
    root.context.log.warn('a root line');
    await root.close();
    const lines = await received(file, 3);
    // local3 = 19: notice 19*8+5 = 157, error (err) 155, warning 156.
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^<157>.*zdc-kit(\[\d+\])?: /);
    expect(lines[0]).toContain(`${root.rootdir}/run 1 (tank/test/run 1) migrate/copy: copied`);
    expect(lines[1]).toMatch(/^<155>/);
    expect(lines[1]).toContain(`${root.rootdir}/run 1 (tank/test/run 1) swap: broke`);
    expect(lines[2]).toMatch(/^<156>/);
    expect(lines[2]).toContain(`${root.rootdir}: a root line`);
    expect(lines.join('\n')).not.toContain('below the level');
  });

  it('names the plugin whose tap logged, as the other sinks do', () => {
    expect(syslogLine({ level: 'info', message: 'published', time: new Date(), rootdir: '/r', dir: 'd', plugin: 'nfs-exports' })).toBe(
      '/r/d: [nfs-exports] published',
    );
  });
});
