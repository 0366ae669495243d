/** The zfs plugin's options (a new ZFS property of every dataset needs none: `properties` takes any). */
import * as z from 'zod';
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
