/**
 * What a plugin tells `doctor` (and check-config) and `history`, through the hooks of the same
 * names (./contract.ts): its checks of the machine and of the root, and the conversions it knows
 * or its fields of each. The runners (src/commands/doctor.ts, history.ts) know no plugin.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { CHECK_STATUSES } from './contract.js';
import { oneLine } from './errors.js';
import { CommandError, run } from './exec.js';
import type { RootContext } from './types.js';

export type CheckStatus = (typeof CHECK_STATUSES)[number];

/** No external command may hang doctor: a wedged zfs daemon is a finding, not a hang. */
export const DOCTOR_TIMEOUT_MS = 60_000;

/** One line of doctor. */
export interface DoctorCheck {
  /** What was checked: "binary rsync", "zfs implementation", or of the root: "roots[0].mount" (`${doctor.label}.mount`). */
  readonly name: string;
  readonly status: CheckStatus;
  /** One line; names the file and the key where there is one (DoctorContext.optionAt). */
  readonly message: string;
  /** The command that sets it right, as arguments: doctor shows it shell-quoted after the message. */
  readonly fix?: readonly string[];
}

/** What a doctor tap gets: the root, and where things are written in the config. */
export interface DoctorContext extends RootContext {
  /** "roots[0]": a check of this root is named `${label}.<what>`. */
  readonly label: string;
  /** Where the root is written, for messages: "config /etc/zfs-dynamic-creator/config.yaml: roots[0]". */
  readonly where: string;
  /**
   * 'config' for check-config: only what the config decides (the root's filesystem, names it
   * configures), changing nothing; no binaries, nothing of the machine's state. 'all' for doctor.
   */
  readonly scope: 'config' | 'all';
  /** Whether a check may make something to ask the system (doctor: a throwaway dataset); not in a dry run or check-config. */
  readonly probe: boolean;
  /** Give run() this timeout (DOCTOR_TIMEOUT_MS), so that no command hangs doctor. */
  readonly timeoutMs: number;
  /** The root's directories with a job in the journal (doctor reports those); undefined when the stateDir may not be read. */
  readonly journalled: ReadonlySet<string> | undefined;
  /** The command that finishes interrupted jobs, for a fix: zfs-dynamic-creator recover --config /etc/x.yaml. */
  readonly recover: readonly string[];
  /** Where a plugin is in the config: "roots[0].plugins[3]", "plugins[3]" (the shared list). */
  pluginAt(plugin: string): string;
  /** Where one of a plugin's options is written: "config /etc/x.yaml: roots[0].plugins[2][1].properties.quota". */
  optionAt(plugin: string, path: readonly string[]): string;
  /** True the first time `key` is asked in this run, across the roots: a check of the machine (a binary) is made once. */
  once(key: string): boolean;
}

/** One field of a conversion in history. */
export interface HistoryField {
  /** Its key in `history --json`, beside rootdir, dataset, mountpoint and converted; one plugin's alone. */
  readonly key: string;
  /** null when the conversion did not record it. */
  readonly value: string | number | null;
  /** How history's line shows it ("3 file(s), 3.3 KiB"), after the fields before it; not shown without. */
  readonly text?: string;
}

/** One finished conversion of a root, as history lists it (oldest first). */
export interface HistoryEntry {
  /** The filesystem's name (for ZFS: the dataset). */
  readonly filesystem: string;
  readonly mountpoint: string;
  /** When it was finished (ISO 8601); null for one converted by a version that kept no history. */
  readonly converted: string | null;
  readonly fields: readonly HistoryField[];
}

/** What a failed command says: its first line on stderr, or the error's one line. */
export function commandFailure(error: unknown): string {
  if (error instanceof CommandError) return (error.stderr.trim().split('\n')[0] ?? '') || oneLine(error);
  return oneLine(error);
}

/** Where a command is: its path, or undefined when it is not found (PATH as this process has it). */
export async function which(command: string): Promise<string | undefined> {
  const candidates = command.includes('/')
    ? [command]
    : (process.env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface BinarySpec {
  /** The check is "binary <name>". */
  readonly name: string;
  /** As configured: a name looked up in PATH, or a path. */
  readonly command: string;
  /** Who needs it for what: said when it is missing. */
  readonly why: string;
  /** Arguments that make it print its version (the first line is shown). */
  readonly versionArgs?: readonly string[];
  /** The status when it is missing (fail unless given). */
  readonly missing?: CheckStatus;
}

/** The check "binary <name>": where the command is and its version, or that it is missing; and its path. */
export async function checkBinary(spec: BinarySpec): Promise<{ check: DoctorCheck; path: string | undefined }> {
  const name = `binary ${spec.name}`;
  const path = await which(spec.command);
  if (path === undefined) {
    return {
      check: {
        name,
        status: spec.missing ?? 'fail',
        message: `${spec.command}: not found in PATH (${process.env.PATH ?? ''}); ${spec.why}`,
      },
      path,
    };
  }
  const version = spec.versionArgs ? await firstLine(path, spec.versionArgs) : undefined;
  return { check: { name, status: 'ok', message: `${path}${version ? `: ${version}` : ''}` }, path };
}

async function firstLine(command: string, args: readonly string[]): Promise<string | undefined> {
  try {
    const r = await run(command, args, { timeoutMs: DOCTOR_TIMEOUT_MS });
    return `${r.stdout}\n${r.stderr}`
      .split('\n')
      .map((l) => l.trim())
      .find(Boolean);
  } catch {
    return undefined;
  }
}
