/**
 * The completion plugin's options: a policy per root, a preset or rules of its own, and the
 * times that judge a run (a marker's age, a stall, how often to look again).
 */
import * as z from 'zod';

export const PRESET_NAMES = ['illumina', 'nanopore', 'pacbio', 'marker'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

/** A path relative to the run (or to a cell), `/`-separated; a component may hold `*`, `?`, `[...]`. */
const pattern = z.string().min(1);

/**
 * One named rule: complete when every pattern of `all` is met and, with `any`, every pattern of
 * one of its sets. With `each`, the patterns are looked for in every directory matching `each`
 * (a PacBio cell), and every such directory must meet them.
 */
export const ruleSchema = z
  .object({
    name: z.string().min(1),
    /** Only for runs whose instrument (from the folder name, RunInfo.xml or RunParameters.xml) matches this regular expression. */
    instrument: z.string().min(1).optional(),
    all: z.array(pattern).default([]),
    any: z.array(z.array(pattern)).default([]),
    each: pattern.optional(),
    /** An Illumina RunCompletionStatus.xml: a status other than CompletedAsPlanned makes the run aborted. */
    status: pattern.optional(),
  })
  .strict();

export type Rule = z.infer<typeof ruleSchema>;

export const options = z
  .object({
    /** quiet: convert at the first quiet window (completion only tracked); complete: wait for the run's markers first. */
    policy: z.enum(['quiet', 'complete']).default('complete'),
    preset: z.enum(PRESET_NAMES).optional(),
    /** Rules of the site's own (a preset's, copied and changed): the first that applies to a run judges it. */
    rules: z.array(ruleSchema).min(1).optional(),
    /** The marker file of the `marker` preset. */
    marker: z.string().min(1).default('DONE'),
    /** Every marker must be at least this old (arteria's completed_marker_grace_minutes). */
    markerAgeSeconds: z.number().min(0).default(60),
    /** Neither complete nor written to for this long: the run is stalled. */
    staleAfterSeconds: z.number().positive().default(86_400),
    /** A stalled run: converted anyway, or left waiting. */
    onStall: z.enum(['convert', 'wait']).default('wait'),
    /** How often a waiting run is looked at again. */
    recheckSeconds: z.number().positive().default(60),
  })
  .strict()
  .refine((o) => !(o.preset !== undefined && o.rules !== undefined), 'give a preset or rules, not both')
  .refine((o) => o.policy === 'quiet' || o.preset !== undefined || o.rules !== undefined, 'policy complete needs a preset or rules');

export type Options = z.infer<typeof options>;
