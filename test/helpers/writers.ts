/**
 * Writers for tests that convert a directory while it is written. They run as the directory's
 * owner (nobody), as instruments and pipelines do, not as root: a root writer creating files by
 * path can also write into the empty mountpoint that zfs makes in the instant before the mount,
 * and the tool then rightly keeps both (docs/guarantees.md), which is another test's subject.
 */
import { chown } from 'node:fs/promises';
import { execa } from 'execa';
import { NOBODY, asNobody } from './attacker.js';

export interface Creator {
  /** The names it made (each written whole), once it has stopped. */
  readonly made: Promise<string[]>;
  stop(): void;
}

/**
 * Gives `dir` to nobody, then creates `new0`, `new1`, … in it every `intervalMs` for `durationMs`
 * (or until stop()), as nobody, by path. A write that fails (the path is moving) is not counted.
 */
export async function unprivilegedCreator(dir: string, intervalMs: number, durationMs: number): Promise<Creator> {
  await chown(dir, NOBODY, NOBODY);
  const script = `
    const fs = require('fs');
    const dir = process.argv[1];
    const made = [];
    let n = 0;
    const finish = () => { clearInterval(timer); process.stdout.write(JSON.stringify(made)); process.exit(0); };
    const timer = setInterval(() => {
      const name = 'new' + n;
      try { fs.writeFileSync(dir + '/' + name, 'content of ' + name); made.push(name); n++; }
      catch (e) { if (e.code !== 'ENOENT' && e.code !== 'EACCES') throw e; }
    }, Number(process.argv[2]));
    setTimeout(finish, Number(process.argv[3]));
    process.on('SIGTERM', finish);
  `;
  const [command, args] = asNobody(process.execPath, ['-e', script, dir, String(intervalMs), String(durationMs)]);
  const child = execa(command, args, { cwd: '/', reject: false });
  return {
    made: child.then((r) => {
      if (r.exitCode !== 0) throw new Error(`the creator failed: ${String(r.stderr)}`);
      return JSON.parse(String(r.stdout)) as string[];
    }),
    stop: () => void child.kill('SIGTERM'),
  };
}
