/**
 * The rsync the copy relies on. rsync runs as root on a tree its owner keeps changing; a
 * directory of it swapped for a symlink after rsync listed it must not lead rsync's reads out
 * of the tree (to root-only data that would then land in the user's dataset). rsync 3.5.0 reads
 * every source file and directory through a per-component O_NOFOLLOW walk anchored at the
 * transfer root, following a symlink there only when root (or rsync's user) owns it
 * (CVE-2026-53797, CVE-2026-53801). Earlier releases open by path: 3.4.0's fix for
 * CVE-2024-12747 made only the last component O_NOFOLLOW.
 *
 * A distribution may carry the fix under an older version number, and a build could lack it
 * under the right one, so the version decides only the common case: 3.5.0 or later is accepted
 * as it is; an older one is accepted only when a probe shows the behaviour itself: rsync asked
 * (with --files-from) for a file below a directory that is a symlink owned by another user must
 * refuse to read it. The probe needs root (only root can give a symlink to another user).
 */
import { lchown, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, run } from '../../src/index.js';

/** The first release whose sender cannot be led out of its tree by a swapped directory. */
export const REQUIRED_RSYNC = [3, 5, 0] as const;
const REQUIRED = REQUIRED_RSYNC.join('.');
const NOBODY = 65534;

/** "3.2.7" from `rsync --version`'s first line ("rsync  version 3.2.7  protocol version 31"). */
export function parseRsyncVersion(stdout: string): [number, number, number] | undefined {
  const m = /^rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)/m.exec(stdout);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

export function atLeast(version: readonly number[], required: readonly number[]): boolean {
  for (let i = 0; i < required.length; i++) {
    const a = version[i] ?? 0;
    const b = required[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

export interface RsyncSafety {
  /** Whether the copy may use this rsync. */
  readonly ok: boolean;
  readonly version: string;
  /** One line: how that was decided. */
  readonly detail: string;
}

/**
 * Whether rsync refuses to read through a directory swapped for a symlink owned by another user:
 * a file listed below such a symlink, in a private temporary directory, must not be copied.
 */
export async function probeSymlinkRefusal(command: string): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'zdc-rsync-probe-'));
  try {
    await Promise.all([mkdir(join(dir, 'src')), mkdir(join(dir, 'outside')), mkdir(join(dir, 'dst'))]);
    await writeFile(join(dir, 'outside', 'f'), 'probe\n');
    await symlink('../outside', join(dir, 'src', 'd'));
    await lchown(join(dir, 'src', 'd'), NOBODY, NOBODY);
    await writeFile(join(dir, 'list'), 'd/f\n');
    try {
      await run(command, ['-a', `--files-from=${join(dir, 'list')}`, '--', `${join(dir, 'src')}/`, `${join(dir, 'dst')}/`]);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
    }
    // Refused: nothing from outside the tree reached the destination.
    const copied = await readdir(join(dir, 'dst', 'd')).catch(() => [] as string[]);
    return !copied.includes('f');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Decides whether `command` is an rsync the copy can rely on (see the top of this file). */
export async function checkRsync(command: string): Promise<RsyncSafety> {
  const { stdout } = await run(command, ['--version']);
  const parsed = parseRsyncVersion(stdout);
  const version = parsed?.join('.') ?? (stdout.split('\n')[0] ?? '').trim();
  if (parsed !== undefined && atLeast(parsed, REQUIRED_RSYNC)) {
    return {
      ok: true,
      version,
      detail: `rsync ${version} (${REQUIRED} or later: it never reads through a directory swapped for a symlink during the copy)`,
    };
  }
  let refuses: boolean;
  try {
    refuses = await probeSymlinkRefusal(command);
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code === 'EPERM' ? 'not running as root' : (error as Error).message;
    return {
      ok: false,
      version,
      detail: `rsync ${version} is older than ${REQUIRED} and its protection against symlink races could not be probed (${why}); install rsync ${REQUIRED} or later`,
    };
  }
  return refuses
    ? {
        ok: true,
        version,
        detail: `rsync ${version} is older than ${REQUIRED}, but a probe shows it refuses to read through a directory swapped for a symlink (the fix is backported)`,
      }
    : {
        ok: false,
        version,
        detail: `rsync ${version} reads through a directory swapped for a symlink during the copy (a user could have root-only files copied into their dataset); install rsync ${REQUIRED} or later (or one with CVE-2026-53797 fixed)`,
      };
}
