/** The daemon (`watch`) as a child process of a test: started, watched through its log, stopped. */
import { setTimeout as sleep } from 'node:timers/promises';
import { onTestFinished } from 'vitest';
import { zfsFuseDiagnosis } from './pool.js';
import { cliSpawn, type TestPool } from './zfs.js';

export interface Daemon {
  /** Everything it has logged (stderr) so far. */
  readonly output: () => string;
  /** Resolves once the log matches; throws (with the log's end) if the daemon exits first or after `timeoutMs`. */
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<void>;
  signal(name: NodeJS.Signals): void;
  /** SIGTERM (SIGKILL after 60 s); resolves to its exit code. */
  stop(): Promise<number>;
  /** Resolves to its exit code once it has exited by itself (no signal sent). */
  readonly exited: Promise<number>;
}

/**
 * Starts `watch` with `config` and waits until it watches. Called inside a test: the daemon is
 * stopped when the test ends, passed or failed, so a failed test never leaves one behind.
 */
export async function startDaemon(p: Pick<TestPool, 'stateDir'>, config: string): Promise<Daemon> {
  const child = cliSpawn(['--config', config, 'watch'], { stateDir: p.stateDir });
  let out = '';
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  let exited: number | undefined;
  const result = child.then((r) => (exited = r.exitCode ?? -1));
  const daemon: Daemon = {
    output: () => out,
    exited: result,
    async waitFor(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      const hit = (): boolean => (typeof pattern === 'string' ? out.includes(pattern) : pattern.test(out));
      while (!hit()) {
        if (exited !== undefined) throw new Error(`the daemon exited (${exited}) before ${String(pattern)}:\n${out.slice(-3000)}`);
        if (Date.now() > deadline) {
          // A daemon that says nothing may be waiting on zfs-fuse: say what zfs-fuse is doing.
          throw new Error(`no ${String(pattern)} within ${timeoutMs} ms:\n${out.slice(-3000)}\n${await zfsFuseDiagnosis()}`);
        }
        await sleep(100);
      }
    },
    signal(name) {
      child.kill(name);
    },
    async stop() {
      if (exited === undefined) child.kill('SIGTERM');
      const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await result;
      clearTimeout(timeout);
      return exited!;
    },
  };
  onTestFinished(async () => {
    await daemon.stop();
  });
  await daemon.waitFor('NOTICE: watching ');
  return daemon;
}
