/**
 * What doctor (and check-config) asks of the zfs plugin: the zfs command and which ZFS it is
 * (once per run), the root's dataset mounted at the root's directory, every configured property
 * name known to the pool and (doctor, not in a dry run) every value accepted, tried on a
 * throwaway child (<rootfs>/.zdc-doctor-<random>, unmounted, destroyed at once: only the pool can
 * say whether it accepts a value); and datasets an interrupted conversion left that the journal
 * does not know.
 */
import { randomBytes } from 'node:crypto';
import { realpath, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkBinary, commandFailure, didYouMean, quoteName, run, type DoctorCheck, type DoctorContext } from '../../src/index.js';
import { detectZfs } from './implementation.js';
import { PROP_STATE } from './zfs.js';

const NAME = 'zfs';

/** Properties the plugin sets itself on every new dataset: a configured value is ignored. */
const SET_BY_THE_TOOL = new Set(['mountpoint']);

/** The options doctor reads. */
export interface DoctorOptions {
  readonly command: string;
  readonly properties: Readonly<Record<string, string>>;
}

/** The doctor tap: this plugin's checks appended to `checks`. */
export async function zfsDoctor(checks: DoctorCheck[], doctor: DoctorContext, opts: DoctorOptions): Promise<DoctorCheck[]> {
  const found: DoctorCheck[] = [];
  if (doctor.scope === 'all' && doctor.once('binary zfs')) found.push(...(await implementation(opts.command)));
  const mount = await mounted(doctor, opts.command);
  found.push(mount.check);
  if (mount.answered) found.push(...(await properties(doctor, opts)));
  if (doctor.scope === 'all' && doctor.journalled !== undefined) found.push(...(await leftovers(doctor, opts.command, doctor.journalled)));
  return [...checks, ...found];
}

/** The zfs command, and which ZFS answers it. */
async function implementation(command: string): Promise<DoctorCheck[]> {
  const binary = await checkBinary({ name: 'zfs', command, why: 'every root needs it' });
  if (binary.path === undefined) return [binary.check];
  try {
    const impl = await detectZfs(command);
    return [binary.check, { name: 'zfs implementation', status: impl.kind === 'unknown' ? 'warn' : 'ok', message: impl.summary }];
  } catch (error) {
    return [binary.check, { name: 'zfs implementation', status: 'fail', message: `${command} does not answer: ${commandFailure(error)}` }];
  }
}

/** The root's dataset exists, is mounted, and at the root's directory; `answered`: zfs could say. */
async function mounted(doctor: DoctorContext, zfs: string): Promise<{ check: DoctorCheck; answered: boolean }> {
  const name = `${doctor.label}.mount`;
  const { rootfs, rootdir, where } = doctor;
  let out: string;
  try {
    out = (await run(zfs, ['get', '-H', '-o', 'property,value', 'mountpoint,mounted', rootfs], { timeoutMs: doctor.timeoutMs })).stdout;
  } catch (error) {
    return { check: { name, status: 'fail', message: `${where}.rootfs: ${commandFailure(error)}` }, answered: false };
  }
  const props = new Map(
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t') as [string, string]),
  );
  const mountpoint = props.get('mountpoint') ?? '';
  if (props.get('mounted') !== 'yes') {
    return {
      check: {
        name,
        status: 'fail',
        message: `${where}.rootfs: ${rootfs} is not mounted (its mountpoint is ${mountpoint})`,
        fix: ['zfs', 'mount', rootfs],
      },
      answered: true,
    };
  }
  const [a, b] = await Promise.all([stat(rootdir).catch(() => undefined), stat(mountpoint).catch(() => undefined)]);
  const real = await realpath(mountpoint).catch(() => mountpoint);
  if (!a || !b || a.dev !== b.dev || a.ino !== b.ino || real !== rootdir) {
    return {
      check: {
        name,
        status: 'fail',
        message: `${where}.rootdir: ${quoteName(rootdir)} is not where ${rootfs} is mounted (${quoteName(mountpoint)})`,
      },
      answered: true,
    };
  }
  return { check: { name, status: 'ok', message: `${rootfs} is mounted at ${quoteName(rootdir)}` }, answered: true };
}

/** Every configured property name is one the pool knows, and (probed) every value one it accepts. */
async function properties(doctor: DoctorContext, opts: DoctorOptions): Promise<DoctorCheck[]> {
  const name = `${doctor.label}.properties`;
  const { rootfs } = doctor;
  const entries = Object.entries(opts.properties);
  if (entries.length === 0) return [{ name, status: 'ok', message: `no ZFS properties configured for ${rootfs}'s new datasets` }];
  let known: string[];
  try {
    known = (await run(opts.command, ['get', '-H', '-o', 'property', 'all', rootfs], { timeoutMs: doctor.timeoutMs })).stdout
      .split('\n')
      .filter(Boolean);
  } catch (error) {
    return [{ name, status: 'fail', message: `cannot list the properties of ${rootfs}: ${commandFailure(error)}` }];
  }
  const keyOf = (k: string): string => doctor.optionAt(NAME, ['properties', k]);
  const checks: DoctorCheck[] = [];
  const toTry: [string, string][] = [];
  for (const [key, value] of entries) {
    if (SET_BY_THE_TOOL.has(key)) {
      checks.push({
        name,
        status: 'warn',
        message: `${keyOf(key)}: the zfs plugin sets ${key} itself on every new dataset; this value is ignored`,
      });
    } else if (key.includes(':') || key.includes('@') || known.includes(key)) {
      // user properties (with ':') are always accepted; userquota@… and friends are tried
      if (!key.includes(':')) toTry.push([key, value]);
    } else {
      const hint = didYouMean(key, known);
      checks.push({
        name,
        status: 'fail',
        message: `${keyOf(key)}: ${rootfs}'s pool has no property ${quoteName(key)}${hint ? ` (did you mean ${quoteName(hint)}?)` : ''}`,
      });
    }
  }
  let failed = checks.some((c) => c.status === 'fail');
  if (toTry.length > 0 && !doctor.probe) {
    if (!failed)
      checks.push({
        name,
        status: 'ok',
        message: `${rootfs} knows ${toTry.map(([k]) => k).join(', ')} (their values not tried: a dry run makes no probe dataset)`,
      });
  } else if (toTry.length > 0) {
    const problems = await tryValues(opts.command, rootfs, toTry, doctor.timeoutMs);
    for (const [key, problem] of problems)
      checks.push({
        name,
        status: 'fail',
        message: `${keyOf(key)}: ${quoteName(opts.properties[key] ?? '')} is refused by ${rootfs}'s pool: ${problem}`,
      });
    failed ||= problems.size > 0;
    const users = entries.length > toTry.length ? ' (and the user properties)' : '';
    if (!failed)
      checks.push({
        name,
        status: 'ok',
        message: `${rootfs} accepts ${toTry.map(([k, v]) => `${k}=${v}`).join(' ')}${users} (tried on a throwaway child)`,
      });
  } else if (!failed) {
    checks.push({ name, status: 'ok', message: `${rootfs}: only user properties configured (always accepted)` });
  }
  return checks;
}

/** Creates an unmounted throwaway child with the properties; on refusal, one at a time to name the culprits. */
async function tryValues(
  zfs: string,
  rootfs: string,
  properties: readonly [string, string][],
  timeoutMs: number,
): Promise<Map<string, string>> {
  const attempt = async (set: readonly [string, string][]): Promise<string | undefined> => {
    const name = `${rootfs}/.zdc-doctor-${randomBytes(4).toString('hex')}`;
    const args = ['create', '-o', 'mountpoint=none', '-o', 'canmount=off'];
    for (const [k, v] of set) args.push('-o', `${k}=${v}`);
    try {
      await run(zfs, [...args, name], { timeoutMs });
    } catch (error) {
      return commandFailure(error).replace(/^cannot create '[^']*': /, '');
    }
    // zfs-fuse may answer busy right after a create: try again a little later.
    for (let i = 0; i < 20; i++) {
      const r = await run(zfs, ['destroy', name], { timeoutMs }).then(
        () => true,
        () => false,
      );
      if (r) break;
      await sleep(100 * (i + 1));
    }
    return undefined;
  };
  const problems = new Map<string, string>();
  if ((await attempt(properties)) === undefined) return problems;
  for (const [key, value] of properties) {
    const problem = await attempt([[key, value]]);
    if (problem !== undefined) problems.set(key, problem);
  }
  if (problems.size === 0) problems.set(properties[0]![0], 'refused together, though each is accepted alone');
  return problems;
}

/** Children of the root an interrupted conversion left (their state not live) that the journal does not know. */
async function leftovers(doctor: DoctorContext, zfs: string, journalled: ReadonlySet<string>): Promise<DoctorCheck[]> {
  const { rootfs } = doctor;
  let out: string;
  try {
    out = (
      await run(zfs, ['list', '-H', '-r', '-d', '1', '-t', 'filesystem', '-o', `name,${PROP_STATE}`, rootfs], {
        timeoutMs: doctor.timeoutMs,
      })
    ).stdout;
  } catch {
    return []; // the mount check said why
  }
  const checks: DoctorCheck[] = [];
  for (const line of out.split('\n')) {
    const [name = '', state = '-'] = line.split('\t');
    if (!name.startsWith(`${rootfs}/`) || state === '-' || state === 'live') continue;
    if (journalled.has(name.slice(rootfs.length + 1))) continue;
    checks.push({
      name: 'jobs',
      status: 'warn',
      message: `${name}: left by an interrupted conversion (state ${state}, no journal record); finish it with`,
      fix: doctor.recover,
    });
  }
  return checks;
}
