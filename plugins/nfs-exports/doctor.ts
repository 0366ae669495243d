/**
 * What doctor asks of the nfs-exports plugin: exportfs (once per run, unless sharenfs does the
 * exporting), and for the root, that the exports files parse as exportfs reads them and that new
 * exports have clients to get (the `clients` option, or the root's own line).
 */
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { checkBinary, oneLine, quoteName, type DoctorCheck, type DoctorContext } from '../../src/index.js';
import { CLIENT_TOKEN, clientsOf, parseExports } from './exports.js';

const NAME = 'nfs-exports';

/** The options doctor reads. */
export interface DoctorOptions {
  readonly mode: string;
  readonly exportsFile: string;
  readonly dropInFile: string;
  readonly exportfsCommand: string;
  readonly clients?: readonly string[] | undefined;
}

/** The doctor tap: this plugin's checks appended to `checks`. */
export async function exportsDoctor(checks: DoctorCheck[], doctor: DoctorContext, opts: DoctorOptions): Promise<DoctorCheck[]> {
  if (doctor.scope !== 'all') return checks;
  const found: DoctorCheck[] = [];
  if (opts.mode !== 'sharenfs' && doctor.once('binary exportfs')) {
    found.push(
      (
        await checkBinary({
          name: 'exportfs',
          command: opts.exportfsCommand,
          why: `the nfs-exports plugin (${doctor.pluginAt(NAME)}) runs it`,
        })
      ).check,
    );
  }
  return [...checks, ...found, ...(await exportsFiles(doctor, opts))];
}

/** Every exports file exportfs reads, parsed; and where new exports take their clients from. */
async function exportsFiles(doctor: DoctorContext, opts: DoctorOptions): Promise<DoctorCheck[]> {
  const name = `${doctor.label}.exports`;
  const dir = dirname(opts.dropInFile);
  const files = [
    opts.exportsFile,
    ...(await readdir(dir).catch(() => [] as string[]))
      .filter((n) => n.endsWith('.exports'))
      .sort()
      .map((n) => join(dir, n)),
  ];
  const checks: DoctorCheck[] = [];
  let clientsFrom: string | undefined;
  let read = 0;
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'latin1');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      checks.push({ name, status: 'fail', message: `${file}: cannot be read: ${(error as NodeJS.ErrnoException).code ?? oneLine(error)}` });
      continue;
    }
    read += 1;
    const entries = parseExports(text);
    for (const e of entries) {
      const bad = e.clients.find((c) => !CLIENT_TOKEN.test(c) && !/^[^\s()"'#\\]+$/.test(c));
      if (bad !== undefined)
        checks.push({
          name,
          status: 'warn',
          message: `${file}:${e.first + 1}: ${quoteName(bad)} is not host(options) as exportfs reads it`,
        });
    }
    if (clientsFrom === undefined && (clientsOf(entries, doctor.rootdir)?.length ?? 0) > 0) clientsFrom = file;
  }
  const configured = opts.clients !== undefined;
  if (!configured && opts.mode !== 'sharenfs' && clientsFrom === undefined) {
    const lines = `${quoteName(doctor.rootdir)} has no line in ${opts.exportsFile} or ${dir}/*.exports to take NFS clients from`;
    checks.push({
      name,
      status: 'fail',
      message: `${doctor.optionAt(NAME, ['clients'])}: not set, and ${lines}: every export would be refused`,
    });
  } else if (checks.length === 0) {
    const from = configured
      ? 'the configured clients'
      : opts.mode === 'sharenfs'
        ? 'sharenfs'
        : `the clients of ${quoteName(doctor.rootdir)}'s line in ${clientsFrom}`;
    checks.push({ name, status: 'ok', message: `${read} exports file(s) parsed; new exports get ${from}` });
  }
  return checks;
}
