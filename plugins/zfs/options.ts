/** The zfs plugin's options (a new ZFS property of every dataset needs none: `properties` takes any). */
import * as z from 'zod';
import { FINAL_RUNS_KEPT_DAYS } from '../../src/index.js';
import { COMPLETION_TEMPLATE, completionSnapshotName } from './completion.js';
import { snapshotNameProblem } from './zfs.js';

/** Properties that can make a write into the dataset fail: set at the commit (quota and refquota also bound the staging copy). */
export const LIMITS: ReadonlySet<string> = new Set(['quota', 'refquota', 'reservation', 'refreservation']);

const propertyValue = z.string().refine((v) => !/[\n\0]/.test(v), 'must be one line');

export const options = z
  .object({
    /** Properties set on every new dataset, e.g. { compression: "on", quota: "2T" }. */
    properties: z.record(z.string().regex(/^[a-z][a-z0-9_.:-]*$/, 'a ZFS property name'), propertyValue).default({}),
    /** The zfs command. */
    command: z.string().min(1).default('zfs'),
    /** Tries for commands zfs answers "busy" to. */
    busyAttempts: z.number().int().min(1).max(20).default(8),
    busyFirstDelayMs: z.number().int().min(1).default(250),
    /**
     * Snapshot <dataset>@<snapshot> once the conversion is finished: the copy verified, the
     * original removed, the limits set (end of cleanup, before the dataset is marked live).
     */
    snapshot: z
      .string()
      .superRefine((v, ctx) => {
        const problem = snapshotNameProblem(v);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    /** Set readonly=on at the very end of cleanup (finished runs): users can no longer write. */
    readonly: z.boolean().default(false),
    /**
     * Snapshot <dataset>@<name> when the run completes (or aborts), named after that moment:
     * true for "{state}-{time}" (complete-20261207T101500Z), or a template of {state} and {time}.
     * A run complete before its conversion gets it at the end of the conversion.
     */
    snapshotOnComplete: z
      .union([z.literal(true), z.string()])
      .transform((v) => (v === true ? COMPLETION_TEMPLATE : v))
      .superRefine((v, ctx) => {
        const problem = snapshotNameProblem(completionSnapshotName(v, 'complete', '2026-12-07T10:15:00.000Z'));
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `with {state} and {time} filled in, ${problem}` });
      })
      .optional(),
    /**
     * readonly=on this long after the run completed or aborted (a run no policy judges complete:
     * after its conversion), set by the sweeps.
     */
    readonlyAfterSeconds: z
      .number()
      .min(0)
      .max(FINAL_RUNS_KEPT_DAYS * 86_400, `at most ${FINAL_RUNS_KEPT_DAYS} days: a run's record is kept that long after it completed`)
      .optional(),
    /**
     * A directory whose name ZFS forbids (names.ts) becomes a dataset of a mapped name, mounted
     * at the directory's path, its own name recorded in the property PROP_NAME; without it, such
     * a directory is refused (once) and left as it is.
     */
    mapNames: z.boolean().default(false),
  })
  .strict()
  .refine((o) => !Object.hasOwn(o.properties, 'readonly'), {
    path: ['properties', 'readonly'],
    message:
      "set at creation it would make the copy fail; use the zfs plugin's option readonly: true, which sets it once the conversion is finished",
  });

export type Options = z.infer<typeof options>;
