/**
 * notify: tells someone how a job ended. It is also the model for a site
 * plugin: one file, options checked by a zod schema, one tap.
 *
 *   plugins:
 *     - [notify, { command: [/usr/local/bin/page-admin, --quiet], on: [failed, deferred] }]
 *     - [notify, { url: "https://hooks.example.org/zfs", timeoutSeconds: 5 }]
 *
 * command  argv (no shell): the outcome as JSON on stdin, and in the environment
 *          ZDC_OUTCOME (the kind), ZDC_DIR (the directory's path), ZDC_DATASET, ZDC_MESSAGE.
 * url      the same JSON, POSTed with fetch.
 *
 * A notification that fails is a warning in the log; it never fails the job.
 */
import * as z from 'zod';
import { OUTCOME_KINDS, definePlugin, oneLine, run, type Job, type Outcome } from '../../src/index.js';

const NAME = 'notify';

const options = z
  .object({
    /** The program and its arguments, run without a shell. */
    command: z.array(z.string()).min(1).optional(),
    /** Where to POST the outcome as JSON. */
    url: z.url({ protocol: /^https?$/ }).optional(),
    /** The outcomes worth a notification. */
    on: z.array(z.enum(OUTCOME_KINDS)).default(['converted', 'failed', 'refused', 'deferred']),
    /** Give up on a notification after this long. */
    timeoutSeconds: z.number().positive().default(10),
  })
  .strict()
  .refine((o) => o.command !== undefined || o.url !== undefined, 'give a command or a url');

type Options = z.infer<typeof options>;

/** What is sent: plain data, nothing a receiver must parse out of a sentence. */
export function payload(job: Job, outcome: Outcome): Record<string, unknown> {
  return {
    outcome: outcome.kind,
    message: outcome.message,
    dir: job.path,
    name: job.name,
    rootdir: job.root.rootdir,
    dataset: job.record.filesystem ?? null,
    durationMs: outcome.durationMs,
    time: new Date().toISOString(),
  };
}

export default definePlugin<Options>({
  name: NAME,
  description: 'runs a command or POSTs to a URL when a job ends',
  options,
  apply(hooks, { options: opts }) {
    hooks.outcome.tapPromise(NAME, async (job, outcome) => {
      if (!opts.on.includes(outcome.kind) || job.dryRun) return;
      const body = JSON.stringify(payload(job, outcome));
      const timeoutMs = opts.timeoutSeconds * 1000;
      try {
        if (opts.command) {
          const [program, ...args] = opts.command as [string, ...string[]];
          await run(program, args, {
            input: `${body}\n`,
            timeoutMs,
            env: { ZDC_OUTCOME: outcome.kind, ZDC_DIR: job.path, ZDC_DATASET: job.record.filesystem ?? '', ZDC_MESSAGE: outcome.message },
          });
        }
        if (opts.url) {
          const response = await fetch(opts.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
            signal: AbortSignal.timeout(timeoutMs),
          });
          if (!response.ok) throw new Error(`${opts.url} answered ${response.status} ${response.statusText}`);
        }
      } catch (error) {
        // Never fail the job over a notification: say so and go on.
        job.log.warn(`notification failed: ${oneLine(error)}`, { step: 'outcome/notify' });
      }
    });
  },
});
