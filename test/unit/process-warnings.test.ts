/**
 * Issue 25: the program's runtime warnings (Node's MaxListenersExceededWarning, a deprecation)
 * go through its log, at debug level, the first of each kind only, instead of Node's own
 * "(node:PID) …" line on stderr. The built CLI with a site plugin that emits warnings as it loads.
 */
import { mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = resolve(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');
let work: string;
let config: string;

beforeAll(async () => {
  work = await realpath(await mkdtemp(join(tmpdir(), 'zdc-warnings-')));
  const plugin = join(work, 'warner.mjs');
  await writeFile(
    plugin,
    `export default { name: 'warner', apply() {
      for (let i = 0; i < 3; i++) process.emitWarning('eleven listeners', 'MaxListenersExceededWarning');
      process.emitWarning('an old way', 'DeprecationWarning', 'DEP0999');
    } };\n`,
  );
  config = join(work, 'config.json');
  await writeFile(
    config,
    JSON.stringify({ stateDir: join(work, 'state'), roots: [{ rootfs: 'tank/x', rootdir: work, plugins: ['zfs', 'rsync', plugin] }] }),
  );
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const run = async (args: string[], env: Record<string, string> = {}) =>
  execa(process.execPath, [CLI, '--config', config, ...args, 'list-plugins'], {
    reject: false,
    env: { ...process.env, ...env },
    stdin: 'ignore',
  });

describe('runtime warnings', () => {
  it('never reach stderr as Node prints them; with -v, one debug line per kind', async () => {
    const plain = await run([]);
    expect(plain.exitCode, plain.stderr).toBe(0);
    expect(plain.stderr).toBe('');
    const verbose = await run(['-v']);
    const lines = verbose.stderr.split('\n').filter((l) => l.includes('runtime warning'));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /DEBUG: runtime warning \(MaxListenersExceededWarning\): eleven listeners; later ones of this kind are counted/,
    );
    expect(lines[1]).toMatch(/DEBUG: runtime warning \(DeprecationWarning DEP0999\): an old way/);
    expect(verbose.stderr).not.toMatch(/\(node:\d+\)/);
  });

  it('at error level when asked (tests): shown with -q too', async () => {
    const r = await run(['-q'], { ZFS_DYNAMIC_CREATOR_WARNINGS: 'error' });
    expect(r.stderr.split('\n').filter((l) => l.includes('ERROR: runtime warning'))).toHaveLength(2);
  });
});
