/** handle: convert one directory, a direct child of a configured root. */
import { lstat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { GlobalOptions } from '../app.js';
import { isErrno } from '../core/index.js';
import { isDirectoryCreation } from './original-cli.js';
import { EXIT, UsageError, report, say, stopSafely, withApp } from './shared.js';

/** `event`: the incron event (anything but a directory's creation is ignored); `wait`: false with --no-wait. */
export async function handle(options: GlobalOptions, dir: string, o: { event?: string; wait: boolean }): Promise<number> {
  if (o.event !== undefined && !isDirectoryCreation(o.event)) return EXIT.ok;
  const target = resolve(dir);
  return withApp(options, async (app) => {
    const { engine, name } = app.locate(target);
    if (!target.includes('\uFFFD') && (await missing(target))) {
      // Said once. Typed by hand: a wrong operand (2). From incron: gone before its turn, nothing to do.
      if (o.event !== undefined) {
        say('notice', `no such directory: ${JSON.stringify(target)} (gone before its turn); nothing to do`);
        return EXIT.ok;
      }
      throw new UsageError(`no such directory: ${JSON.stringify(target)}`);
    }
    return report(await engine.handle(name, { signal: stopSafely(), recoverRoot: true, deferCleanup: !o.wait, retryRefused: true }));
  });
}

/** Whether nothing is at `path` (the operand of handle): a mistyped path, or one gone already. */
async function missing(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return false;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return true;
    throw error;
  }
}
