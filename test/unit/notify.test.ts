/**
 * The notify plugin through the test kit: a real command (the outcome as JSON on its stdin and in
 * ZDC_* variables) and a real HTTP receiver on localhost; only the outcomes asked for; nothing in
 * a dry run; a notification that fails is a warning, never the job's failure.
 */
import { readFile } from 'node:fs/promises';
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
    await root.use(notify, { command: ['/bin/sh', '-c', 'exit 3'] });
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
