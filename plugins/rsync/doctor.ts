/**
 * What doctor asks of the rsync plugin (once per run): zpool, which tells the pool's features
 * (block cloning; copies fall back without it), and the rsync command with the protection
 * against symlink races the copy relies on (version.ts).
 */
import { checkBinary, commandFailure, type DoctorCheck, type DoctorContext } from '../../src/index.js';
import { REQUIRED_RSYNC, checkRsync } from './version.js';

const NAME = 'rsync';

/** The doctor tap: this plugin's checks appended to `checks`. */
export async function rsyncDoctor(
  checks: DoctorCheck[],
  doctor: DoctorContext,
  opts: { readonly command: string },
): Promise<DoctorCheck[]> {
  if (doctor.scope !== 'all') return checks;
  const found: DoctorCheck[] = [];
  if (doctor.once('binary zpool')) {
    found.push(
      (
        await checkBinary({
          name: 'zpool',
          command: 'zpool',
          why: "used to learn the pool's features (block cloning); copies fall back without it",
          missing: 'warn',
        })
      ).check,
    );
  }
  if (doctor.once('binary rsync')) found.push(...(await rsync(opts.command, doctor.pluginAt(NAME))));
  return [...checks, ...found];
}

async function rsync(command: string, at: string): Promise<DoctorCheck[]> {
  const binary = await checkBinary({ name: 'rsync', command, why: `the rsync plugin (${at}) copies with it`, versionArgs: ['--version'] });
  if (binary.path === undefined) return [binary.check];
  // The release (or, for an older one, the probed behaviour) the copy relies on against symlink races.
  const safety = await checkRsync(command).catch((error: unknown) => ({
    ok: false,
    detail: `${command} --version: ${commandFailure(error)}`,
  }));
  const required = `required: rsync ${REQUIRED_RSYNC.join('.')} or later, or an older one that a probe shows refusing`;
  return [binary.check, { name: 'rsync symlink races', status: safety.ok ? 'ok' : 'fail', message: `${safety.detail}; ${required}` }];
}
