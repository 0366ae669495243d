/**
 * What doctor asks of the syslog plugin: the logger command it sends through (once per run), and
 * that a syslog daemon listens on its socket (once per socket); without either, log lines reach
 * only stderr: warnings, not failures.
 */
import { lstat } from 'node:fs/promises';
import { checkBinary, type DoctorCheck, type DoctorContext } from '../../src/index.js';

const NAME = 'syslog';

/** The doctor tap: this plugin's checks appended to `checks`. */
export async function syslogDoctor(
  checks: DoctorCheck[],
  doctor: DoctorContext,
  opts: { readonly command: string; readonly socket: string },
): Promise<DoctorCheck[]> {
  if (doctor.scope !== 'all') return checks;
  const found: DoctorCheck[] = [];
  if (doctor.once('binary logger')) {
    const why = `the syslog plugin (${doctor.pluginAt(NAME)}) sends through it (log lines would only reach stderr)`;
    found.push((await checkBinary({ name: 'logger', command: opts.command, why, versionArgs: ['--version'], missing: 'warn' })).check);
  }
  if (doctor.once(`syslog ${opts.socket}`)) {
    const stats = await lstat(opts.socket).catch(() => undefined);
    if (stats?.isSocket()) found.push({ name: 'syslog', status: 'ok', message: `${opts.socket} is a socket (${doctor.pluginAt(NAME)})` });
    else
      found.push({
        name: 'syslog',
        status: 'warn',
        message: `${doctor.optionAt(NAME, ['socket'])}: ${opts.socket} ${stats ? 'is not a socket' : 'does not exist'}: no syslog daemon listens; log lines reach only stderr`,
      });
  }
  return [...checks, ...found];
}
