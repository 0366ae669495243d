/**
 * The completion plugin against a run folder its owner turns against the tool (the root is
 * shared, the owner keeps full control of the folder, the tool runs as root): a socket in a
 * marker's place, XML made to backtrack, values and listings made huge, times no clock has, and
 * names and contents with control characters that end up in `status`. Each gives a state and a
 * bounded note, never a failed job, never a stalled daemon.
 */
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { testRoot, type TestRoot } from '../../src/testing.js';
import completion from '../../plugins/completion/index.js';
import { runLines, selectRuns } from '../../src/commands/status.js';

const NOVASEQ_X = '20240131_LH00123_0042_A22ABCDLT3';
let root: TestRoot | undefined;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
  await root?.dispose();
  root = undefined;
});

/** A root in `tmp` (tmpfs keeps any time a user sets; ext4 clamps them) with the plugin and the run folder `name`. */
async function setUp(opts: Record<string, unknown>, name = NOVASEQ_X, tmp?: string): Promise<{ root: TestRoot; run: string }> {
  const saved = process.env.TMPDIR;
  if (tmp !== undefined) process.env.TMPDIR = tmp;
  try {
    root = await testRoot({ dirs: [name] });
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  await root.use(completion, opts);
  return { root, run: join(root.rootdir, name) };
}

/** A file of `text` whose mtime is `mtimeSeconds` (touch: node's utimes takes no time before 1970). */
async function file(path: string, text: string, mtimeSeconds = Math.round(Date.now() / 1000) - 600): Promise<void> {
  await writeFile(path, text);
  await execa('touch', ['-m', '-d', `@${mtimeSeconds}`, '--', path]);
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

describe('completion: a hostile run folder', () => {
  it('a socket in the place of RunCompletionStatus.xml is no status file: waiting, the problem told, no failure', async () => {
    const { root, run } = await setUp({ preset: 'illumina' });
    const server = createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(join(run, 'RunCompletionStatus.xml'), resolve));
    const defer = await root.wait(await root.job(NOVASEQ_X));
    expect(defer).toMatchObject({ waiting: true, defer: expect.stringContaining('RunCompletionStatus.xml is not a regular file') });
  });

  // The guard is against a quadratic scan (seconds per look, the daemon's event loop held): one pass takes milliseconds.
  it("a write lease its owner holds on RunCompletionStatus.xml (as Samba's kernel oplocks do): read later, no failure", async () => {
    const { root, run } = await setUp({ preset: 'illumina' });
    await chmod(root.dir, 0o755);
    await chown(run, 65534, 65534);
    const hold = `import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT, 0o644)
fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)  # F_SETLEASE
print('held', flush=True)
time.sleep(60)`;
    const holder = execa('setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '--',
      '/usr/bin/python3',
      '-c',
      hold,
      join(run, 'RunCompletionStatus.xml'),
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('held') && resolve());
        holder.catch(reject);
      });
      expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({
        waiting: true,
        defer: expect.stringContaining('RunCompletionStatus.xml cannot be read now'),
      });
    } finally {
      holder.kill('SIGKILL');
      await holder.catch(() => undefined);
    }
  });

  it('XML made to backtrack (256 KiB of unclosed openings, in every file read) is read in one pass', { timeout: 10_000 }, async () => {
    // A name that does not tell the instrument: RunInfo.xml and both RunParameters.xml are read.
    const { root, run } = await setUp({ preset: 'illumina' }, 'renamed run');
    const text = (element: string): string => `<${element} `.repeat(Math.floor((256 * 1024) / (element.length + 2)));
    await file(join(run, 'RunInfo.xml'), text('Instrument'));
    await file(join(run, 'RunParameters.xml'), text('InstrumentName'));
    await file(join(run, 'runParameters.xml'), text('ScannerID'));
    await file(join(run, 'RunCompletionStatus.xml'), text('CompletionStatus'));
    for (let i = 0; i < 2; i++)
      expect(await root.wait(await root.job('renamed run'))).toMatchObject({
        waiting: true,
        defer: expect.stringContaining('(Illumina, instrument not recognised)'),
      });
  });

  it('a status or an instrument id 200,000 characters long is not taken: the note stays short', async () => {
    const { root, run } = await setUp({ preset: 'illumina' }, 'renamed run');
    await file(join(run, 'RunInfo.xml'), `<RunInfo><Instrument>LH${'0'.repeat(200_000)}</Instrument></RunInfo>`);
    await file(join(run, 'RunCompletionStatus.xml'), `<CompletionStatus>Failed${'X'.repeat(200_000)}</CompletionStatus>`);
    const defer = await root.wait(await root.job('renamed run'));
    expect(defer).toMatchObject({ waiting: true });
    const run2 = await root.context.runs.get('renamed run');
    expect(run2!.note!.length).toBeLessThan(1000);
  });

  it('hundreds of entries that match a marker but are no file: the note names a few and stays short', async () => {
    const name = '20240131_1200_1A_PAO12345_abcdef01';
    const { root, run } = await setUp({ preset: 'nanopore' }, name);
    for (let i = 0; i < 300; i++) await mkdir(join(run, `final_summary_${String(i).padStart(4, '0')}.txt`));
    const defer = await root.wait(await root.job(name));
    expect(defer).toMatchObject({
      waiting: true,
      defer: expect.stringMatching(/final_summary_\d{4}\.txt is a dir, not a file \(and 297 more\)$/),
    });
    const rec = await root.context.runs.get(name);
    expect(rec!.note!.length).toBeLessThan(1000);
  });

  it('hundreds of PacBio cells, none transferred: the note stays short', async () => {
    const name = 'r84012_20240131_120000';
    const { root, run } = await setUp({ preset: 'pacbio' }, name);
    for (let i = 0; i < 300; i++) await mkdir(join(run, `${i % 10}_${String(i).padStart(3, '0')}`));
    expect(await root.wait(await root.job(name))).toMatchObject({ waiting: true, defer: expect.stringContaining('0 of 300 cell(s)') });
    expect((await root.context.runs.get(name))!.note!.length).toBeLessThan(1000);
  });

  it('a RunCompletionStatus.xml dated 300,000 years before 1970 (tmpfs keeps it): aborted at a time that is a time', async () => {
    const { root, run } = await setUp({ preset: 'illumina' }, NOVASEQ_X, '/dev/shm');
    await file(join(run, 'RunCompletionStatus.xml'), '<CompletionStatus>RunErrored</CompletionStatus>', -1e13);
    expect(await root.wait(await root.job(NOVASEQ_X))).toBeUndefined();
    const rec = await root.context.runs.get(NOVASEQ_X);
    expect(rec).toMatchObject({ state: 'aborted', completedAt: '1970-01-01T00:00:00.000Z' });
  });

  it('a stalled run written to "300,000 years from now" (tmpfs keeps it) is active again, never a failure', async () => {
    const { root, run } = await setUp({ preset: 'illumina', staleAfterSeconds: 1 }, NOVASEQ_X, '/dev/shm');
    await sleep(1200);
    expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({ waiting: true, defer: expect.stringMatching(/^stalled: /) });
    await file(join(run, 'InterOp.bin'), 'cycle 2', 1e13);
    expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({ waiting: true, defer: expect.stringMatching(/^waiting for/) });
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({ state: 'waiting' });
  });

  it("control characters in what a run's files say never reach status's lines raw", async () => {
    const name = '20240131_1200_1A_PAO12345_abcdef01';
    const { root, run } = await setUp({ preset: 'nanopore' }, name);
    await mkdir(join(run, 'final_summary_\u001b[2J\nrefused     "x" needs attention.txt'));
    await root.wait(await root.job(name));
    const lines = runLines(selectRuns(await root.context.runs.list()));
    expect(lines.join('\n')).toContain('final_summary_');
    for (const line of lines) expect(line).not.toMatch(CONTROL);
  });
});
