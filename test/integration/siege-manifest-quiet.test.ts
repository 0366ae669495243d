/**
 * Issue 25, on the real pool: quiet at a real size. One directory of 20,000 files converted by
 * `handle -q` with the shipped plugin list (waits 0), and a burst through `watch -q`: nothing on
 * stderr (what -q promises: errors only, and there are none), exit 0. The runs ask for runtime
 * warnings at error level (ZFS_DYNAMIC_CREATOR_WARNINGS=error), so a MaxListenersExceededWarning
 * or any other would show here; by default the program logs them at debug level.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftovers } from '../helpers/state.js';
import { scaled } from '../helpers/time.js';
import { cli, cliSpawn, createPool, waitLive, writeConfig, type TestPool } from '../helpers/zfs.js';

let p: TestPool;
let config: string;
const env = { ZFS_DYNAMIC_CREATOR_WARNINGS: 'error' };

beforeAll(async () => {
  p = await createPool('siegequiet', 512);
  // The shipped list (src/app.ts DEFAULT_PLUGINS), its waits set to 0.
  config = await writeConfig(p, ['name-filter', ['quiet-wait', { quietSeconds: 0 }], 'zfs', ['rsync', { graceSeconds: 0 }], 'syslog'], {
    watch: { sweepIntervalSeconds: 5 },
  });
});
afterAll(async () => {
  await p?.destroy();
});

/** `files` files of a few bytes in directories of 1,000, written 64 at a time. */
async function smallTree(dir: string, files: number): Promise<void> {
  const dirs = Math.ceil(files / 1000);
  for (let d = 0; d < dirs; d++) await mkdir(join(dir, `d${d}`), { recursive: true });
  for (let i = 0; i < files; i += 64) {
    await Promise.all(
      Array.from({ length: Math.min(64, files - i) }, (_, k) =>
        writeFile(join(dir, `d${Math.floor((i + k) / 1000)}`, `f${i + k}`), `${i + k}\n`),
      ),
    );
  }
}

describe('quiet at a real size', () => {
  it('handle -q of 20,000 files: stderr empty, exit 0, converted', async () => {
    const t0 = Date.now();
    await smallTree(join(p.mount, 'big'), 20_000);
    const made = Date.now() - t0;
    const r = await cli(['--config', config, '-q', 'handle', join(p.mount, 'big')], {
      stateDir: p.stateDir,
      env,
      timeoutMs: scaled(600_000),
    });
    console.log(`20,000 files: tree made in ${made} ms, handle -q in ${Date.now() - t0 - made} ms`);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(await leftovers(p)).toEqual([]);
  });

  it('watch -q over a burst (one directory of 5,000 files among them): nothing on stderr, all converted', async () => {
    const daemon = cliSpawn(['--config', config, '-q', 'watch'], { stateDir: p.stateDir, env });
    let err = '';
    daemon.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    try {
      // Watching once status sees the daemon (it says nothing itself with -q).
      for (let i = 0; ; i++) {
        const s = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir })).stdout) as { daemon: unknown };
        if (s.daemon !== null) break;
        if (i > 100) throw new Error(`the daemon did not start: ${err}`);
        await sleep(300);
      }
      const names = Array.from({ length: 12 }, (_, i) => `burst${i}`);
      for (const [i, n] of names.entries()) await smallTree(join(p.mount, n), i === 0 ? 5000 : 20);
      await waitLive(p, names, scaled(240_000));
    } finally {
      daemon.kill('SIGTERM');
    }
    const r = await daemon;
    expect(err).toBe('');
    expect(r.exitCode).toBe(0);
  });
});
