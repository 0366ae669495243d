/**
 * The presets: each a named list of rules a site can copy into `rules` and change. The sources
 * of each are in docs/instruments.md; the first rule that applies to a run judges it.
 */
import type { PresetName, Rule } from './options.js';

const STATUS = 'RunCompletionStatus.xml';

/** Illumina, per instrument (its id's prefix); the last rule, for an id not recognised, is the strictest. */
const ILLUMINA: Rule[] = [
  { name: 'NovaSeq X', instrument: '^LH', all: ['CopyComplete.txt'], any: [], status: STATUS },
  { name: 'NextSeq 1000/2000', instrument: '^V[HL]', all: ['CopyComplete.txt'], any: [], status: STATUS },
  { name: 'MiSeq i100', instrument: '^SH', all: ['CopyComplete.txt'], any: [], status: STATUS },
  { name: 'NovaSeq 6000', instrument: '^A\\d', all: ['CopyComplete.txt'], any: [], status: STATUS },
  { name: 'iSeq 100', instrument: '^FS', all: ['CopyComplete.txt'], any: [], status: STATUS },
  { name: 'NextSeq 500/550', instrument: '^N[BS]', all: [], any: [['RTAComplete.txt'], ['RTAComplete.xml']], status: STATUS },
  { name: 'MiniSeq', instrument: '^MN', all: ['RTAComplete.txt'], any: [], status: STATUS },
  { name: 'MiSeq', instrument: '^M\\d', all: ['RTAComplete.txt'], any: [], status: STATUS },
  { name: 'HiSeq', instrument: '^(D|SN|J|K|E|ST-E)', all: ['RTAComplete.txt'], any: [], status: STATUS },
  { name: 'Illumina, instrument not recognised', all: ['RTAComplete.txt', 'CopyComplete.txt'], any: [], status: STATUS },
];

/** MinKNOW: final_summary_*.txt in the run's directory once every file is written. */
const NANOPORE: Rule[] = [{ name: 'MinKNOW', all: ['final_summary_*.txt'], any: [] }];

/** PacBio Revio: no run-level marker; each cell (1_A01, …) says it is transferred. */
const PACBIO: Rule[] = [{ name: 'Revio', each: '[0-9]_???', all: ['metadata/*.transferdone'], any: [] }];

/** The rules of a preset (`marker`: the file named by the option of that name). */
export function presetRules(preset: PresetName, marker: string): Rule[] {
  switch (preset) {
    case 'illumina':
      return ILLUMINA;
    case 'nanopore':
      return NANOPORE;
    case 'pacbio':
      return PACBIO;
    case 'marker':
      return [{ name: `marker ${marker}`, all: [marker], any: [] }];
  }
}

/** The rules that judge the root's runs: the site's own, or its preset's; none when neither is given. */
export function rulesOf(opts: {
  readonly preset?: PresetName | undefined;
  readonly rules?: readonly Rule[] | undefined;
  readonly marker: string;
}): Rule[] {
  if (opts.rules !== undefined) return [...opts.rules];
  return opts.preset === undefined ? [] : presetRules(opts.preset, opts.marker);
}

/** How the policy is named in a run's record and in status. */
export function policyName(opts: {
  readonly policy: string;
  readonly preset?: string | undefined;
  readonly rules?: readonly Rule[] | undefined;
}): string {
  const of = opts.rules !== undefined ? 'rules' : opts.preset;
  return of === undefined ? opts.policy : `${opts.policy} (${of})`;
}
