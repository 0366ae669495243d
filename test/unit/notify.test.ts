/**
 * The notify plugin through the test kit: a real command (the outcome as JSON on its stdin and in
 * ZDC_* variables) and a real HTTP receiver on localhost; only the outcomes and run events asked
 * for; nothing in a dry run; a notification that fails is a warning, never the job's failure; it
 * is tried again at once, then kept in the outbox and sent again by the sweeps, given up at last.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import notify from '../../plugins/notify/index.js';
import { testRoot, type TestRoot } from '../../src/testing.js';

let root: TestRoot | undefined;
let server: Server | undefined;
afterEach(async () => {
  await root?.dispose();
  root = undefined;
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

/** A command that writes what it was given (stdin, then its ZDC_ variables) to `file`. */
const recorder = (file: string) => ['/bin/sh', '-c', 'cat > "$1"; env | grep "^ZDC_" | sort >> "$1"', 'sh', file];

describe('notify', () => {
  it('runs its command with the outcome as JSON on stdin and in ZDC_* variables', async () => {
    root = await testRoot({ dirs: ['run-1'] });
    const file = join(root.dir, 'told');
    await root.use(notify, { command: recorder(file) });
    const job = await root.job('run-1', { fields: { filesystem: 'tank/test/run-1' }, committed: true });
    await root.outcome(job, 'converted', 'converted into tank/test/run-1');
    const [json, ...env] = (await readFile(file, 'utf8')).trimEnd().split('\n');
    expect(JSON.parse(json!)).toMatchObject({
      outcome: 'converted',
      message: 'converted into tank/test/run-1',
      dir: job.path,
      name: 'run-1',
      rootdir: root.rootdir,
      dataset: 'tank/test/run-1',
    });
    // (the test run's own ZDC_ variables are inherited beside them)
    expect(env).toEqual(
      expect.arrayContaining([
        'ZDC_DATASET=tank/test/run-1',
        `ZDC_DIR=${job.path}`,
        'ZDC_MESSAGE=converted into tank/test/run-1',
        'ZDC_OUTCOME=converted',
      ]),
    );
  });

  it('POSTs the same JSON to its url, only for the outcomes it is on', async () => {
    const bodies: unknown[] = [];
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      request.on('end', () => {
        bodies.push({ method: request.method, type: request.headers['content-type'], body: JSON.parse(body) as unknown });
        response.end();
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    root = await testRoot({ dirs: ['run-1'] });
    await root.use(notify, { url: `http://127.0.0.1:${port}/zfs`, on: ['failed'] });
    const job = await root.job('run-1');
    await root.outcome(job, 'converted');
    await root.outcome(job, 'failed', 'migrate failed');
    expect(bodies).toEqual([
      {
        method: 'POST',
        type: 'application/json',
        body: expect.objectContaining({ outcome: 'failed', message: 'migrate failed', dataset: null }),
      },
    ]);
  });

  it('tells nobody in a dry run', async () => {
    root = await testRoot({ dirs: ['run-1'], dryRun: true });
    const file = join(root.dir, 'told');
    await root.use(notify, { command: recorder(file) });
    await root.outcome(await root.job('run-1'), 'converted');
    await expect(readFile(file)).rejects.toThrow(/ENOENT/);
  });

  it('a command that fails is a warning naming the step, and the outcome hook still succeeds', async () => {
    root = await testRoot({ dirs: ['run-1'] });
    await root.use(notify, { command: ['/bin/sh', '-c', 'exit 3'], retryDelaySeconds: 0.01 });
    await root.outcome(await root.job('run-1'), 'failed');
    expect(root.logs).toContainEqual(
      expect.objectContaining({
        level: 'warning',
        plugin: 'notify',
        step: 'outcome/notify',
        message: expect.stringMatching(/^notification failed: /),
      }),
    );
  });

  it('wants a command or a url', async () => {
    root = await testRoot();
    await expect(root.use(notify, {})).rejects.toThrow(/give a command or a url/);
  });
});

/** A receiver on localhost that answers 503 to its first `failures` requests, then 200; the bodies it took. */
async function receiver(
  failures: number,
): Promise<{ url: string; bodies: Record<string, unknown>[]; requests: () => number; heal: () => void }> {
  const bodies: Record<string, unknown>[] = [];
  let requests = 0;
  let left = failures;
  server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      requests += 1;
      if (left > 0) {
        left -= 1;
        response.statusCode = 503;
      } else bodies.push(JSON.parse(body) as Record<string, unknown>);
      response.end();
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/zfs`, bodies, requests: () => requests, heal: () => (left = 0) };
}

/** The notifications kept in the outbox of the test's root. */
async function kept(r: TestRoot): Promise<string[]> {
  const top = join(r.stateDir, 'notify-outbox');
  const dirs = await readdir(top).catch(() => [] as string[]);
  return (await Promise.all(dirs.map((d) => readdir(join(top, d))))).flat().filter((f) => f.endsWith('.json'));
}

const fast = { retryDelaySeconds: 0.01, timeoutSeconds: 5 };
const warnings = (r: TestRoot): string[] => r.logs.filter((l) => l.level === 'warning').map((l) => l.message);

describe('notify: retries and the outbox', () => {
  it('tries again at once: a receiver that fails twice gets it on the third try, and nothing is kept', async () => {
    const http = await receiver(2);
    root = await testRoot({ dirs: ['run-1'] });
    await root.use(notify, { url: http.url, ...fast });
    await root.outcome(await root.job('run-1'), 'converted');
    expect(http.requests()).toBe(3);
    expect(http.bodies).toEqual([expect.objectContaining({ outcome: 'converted', name: 'run-1' })]);
    expect(warnings(root)).toEqual([]);
    expect(await kept(root)).toEqual([]);
  });

  it('still failing: one warning, kept in the outbox; each sweep tries again (one warning each), until it is delivered once', async () => {
    const http = await receiver(1000);
    root = await testRoot({ dirs: ['run-1'] });
    await root.use(notify, { url: http.url, attempts: 3, ...fast });
    await root.outcome(await root.job('run-1'), 'failed', 'migrate failed');
    expect(http.requests()).toBe(3);
    expect(warnings(root)).toEqual([expect.stringMatching(/^notification failed: failed to http:.* answered 503 .*kept in /)]);
    expect(await kept(root)).toHaveLength(1);
    await root.sync(await root.survey());
    expect(http.requests()).toBe(4); // one try per sweep
    expect(warnings(root)).toHaveLength(2);
    http.heal();
    await root.sync(await root.survey());
    expect(http.bodies).toEqual([expect.objectContaining({ outcome: 'failed', message: 'migrate failed', dataset: null })]);
    expect(await kept(root)).toEqual([]);
    await root.sync(await root.survey());
    expect(http.bodies).toHaveLength(1);
    expect(root.messages('notify')).toContain('sent 1 kept notification(s)');
  });

  it('a command script that fails its first two runs gets the run event on its third, with ZDC_EVENT', async () => {
    root = await testRoot({ dirs: ['run-1'] });
    const out = join(root.dir, 'told');
    const count = join(root.dir, 'count');
    const script = join(root.dir, 'receiver.sh');
    await writeFile(
      script,
      `#!/bin/sh\nn=$(cat "${count}" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "${count}"\n[ $n -ge 3 ] || exit 1\ncat >> "${out}"; echo "$ZDC_EVENT $ZDC_DIR" >> "${out}"\n`,
      { mode: 0o755 },
    );
    await root.use(notify, { command: [script], on: [], events: ['run.complete'], ...fast });
    await root.context.runs.note('run-1', {
      kind: 'complete',
      at: '2026-12-07T10:15:00.000Z',
      note: 'CopyComplete.txt',
      policy: 'illumina',
    });
    const [json, env] = (await readFile(out, 'utf8')).trimEnd().split('\n');
    expect(JSON.parse(json!)).toEqual({
      event: 'run.complete',
      rootdir: root.rootdir,
      name: 'run-1',
      path: join(root.rootdir, 'run-1'),
      state: 'complete',
      since: expect.any(String),
      dataset: null,
      completedAt: '2026-12-07T10:15:00.000Z',
      policy: 'illumina',
      note: 'CopyComplete.txt',
      time: expect.any(String),
    });
    // run.detected (the run's first fact) was not asked for
    expect(env).toBe(`run.complete ${join(root.rootdir, 'run-1')}`);
    expect(await readFile(count, 'utf8')).toBe('3\n');
    expect(warnings(root)).toEqual([]);
  });

  it('a receiver that does not answer is given up within timeoutSeconds, each try', async () => {
    root = await testRoot({ dirs: ['run-1'] });
    const count = join(root.dir, 'count');
    await root.use(notify, {
      command: ['/bin/sh', '-c', 'echo try >> "$1"; exec sleep 60', 'sh', count],
      attempts: 2,
      ...fast,
      timeoutSeconds: 0.3,
    });
    await root.outcome(await root.job('run-1'), 'failed');
    expect(await readFile(count, 'utf8')).toBe('try\ntry\n');
    expect(warnings(root)).toEqual([expect.stringMatching(/^notification failed: failed to \/bin\/sh: .*timed out; kept in /)]);
    expect(await kept(root)).toHaveLength(1);
  });

  it('gives up a notification kept longer than outboxMaxAgeHours, with a warning', async () => {
    const http = await receiver(1000);
    root = await testRoot({ dirs: ['run-1'] });
    await root.use(notify, { url: http.url, attempts: 1, outboxMaxAgeHours: 1 / 3600, ...fast });
    await root.outcome(await root.job('run-1'), 'converted');
    expect(await kept(root)).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await root.sync(await root.survey());
    expect(warnings(root).at(-1)).toMatch(/^gave up the notification converted to http:.* undelivered for /);
    expect(await kept(root)).toEqual([]);
    expect(http.requests()).toBe(1);
  });

  it('keeps nothing in a dry run, and a sweep of a dry run sends nothing', async () => {
    const http = await receiver(0);
    root = await testRoot({ dirs: ['run-1'], dryRun: true });
    await root.use(notify, { url: http.url, events: ['run.detected'], ...fast });
    await root.outcome(await root.job('run-1'), 'failed');
    await root.sync(await root.survey());
    expect(http.requests()).toBe(0);
    expect(await kept(root)).toEqual([]);
  });
});
