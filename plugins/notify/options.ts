/** notify's options (index.ts says what each does). */
import * as z from 'zod';
import { OUTCOME_KINDS, RUN_EVENTS } from '../../src/index.js';

export const options = z
  .object({
    /** The program and its arguments, run without a shell. */
    command: z.array(z.string()).min(1).optional(),
    /** Where to POST the outcome as JSON. */
    url: z.url({ protocol: /^https?$/ }).optional(),
    /** The outcomes worth a notification. */
    on: z.array(z.enum(OUTCOME_KINDS)).default(['converted', 'failed', 'refused', 'deferred']),
    /** The run events worth a notification (none by default: a receiver of outcomes gets what it got). */
    events: z.array(z.enum(RUN_EVENTS)).default([]),
    /** Give up on one try after this long. */
    timeoutSeconds: z.number().positive().default(10),
    /** Tries at once, the first included, before the notification waits in the outbox. */
    attempts: z.number().int().min(1).max(10).default(3),
    /** Pause before the second try; doubles each time (3 tries: at 0, 2 and 6 s). */
    retryDelaySeconds: z.number().min(0).max(60).default(2),
    /** A notification still undelivered after this long is given up (a warning). */
    outboxMaxAgeHours: z.number().positive().default(24),
  })
  .strict()
  .refine((o) => o.command !== undefined || o.url !== undefined, 'give a command or a url');

export type Options = z.infer<typeof options>;
