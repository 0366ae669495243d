/**
 * notify: tells someone how a job ended, and what became of a run. It is also the model for a
 * site plugin: a small folder, options checked by a zod schema (options.ts), a few taps.
 *
 *   plugins:
 *     - [notify, { command: [/usr/local/bin/page-admin, --quiet], on: [failed, deferred] }]
 *     - [notify, { url: "https://hooks.example.org/zfs", on: [], events: [run.complete] }]
 *
 * command  argv (no shell): the document as JSON on stdin, and in the environment: for an outcome
 *          ZDC_OUTCOME (the kind), ZDC_DIR (the directory's path), ZDC_DATASET, ZDC_MESSAGE; for
 *          a run event ZDC_EVENT, ZDC_DIR, ZDC_DATASET.
 * url      the same JSON, POSTed.
 * on       the outcomes told (payload()); events: the run events told (runPayload()).
 *
 * Delivery (notifier.ts): each notification is kept in an outbox in the stateDir before it is
 * tried, tried `attempts` times with backoff, each try within `timeoutSeconds`; one still failing
 * is one warning and stays in the outbox, tried again at each sweep, given up (a warning) after
 * `outboxMaxAgeHours`. At least once: a receiver may get one twice, and not always in order (each
 * has its `time`). A notification never fails the job or the sweep. Nothing in a dry run.
 */
import { definePlugin, oneLine, type Job, type Outcome, type RunEvent } from '../../src/index.js';
import { Notifier } from './notifier.js';
import { options, type Options } from './options.js';

const NAME = 'notify';

/** What an outcome's notification says: plain data, nothing a receiver must parse out of a sentence. */
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

/** What a run event's notification says (the run as it stands after the event). */
export function runPayload(event: RunEvent): Record<string, unknown> {
  const { run } = event;
  return {
    event: event.event,
    rootdir: event.rootdir,
    name: event.name,
    path: event.path,
    state: run.state,
    since: run.since,
    dataset: run.dataset ?? null,
    completedAt: run.completedAt ?? null,
    policy: run.policy ?? null,
    note: run.note ?? null,
    time: event.time,
  };
}

export default definePlugin<Options>({
  name: NAME,
  description: 'runs a command or POSTs to a URL when a job ends or a run changes, retried until delivered',
  options,
  apply(hooks, { options: opts, log }) {
    const notifier = new Notifier(opts);
    hooks.outcome.tapPromise(NAME, async (job, outcome) => {
      if (!opts.on.includes(outcome.kind) || job.dryRun) return;
      const env = { ZDC_OUTCOME: outcome.kind, ZDC_DIR: job.path, ZDC_DATASET: job.record.filesystem ?? '', ZDC_MESSAGE: outcome.message };
      await notifier.tell(job.root, { what: outcome.kind, name: job.name, body: payload(job, outcome), env }, (message) =>
        job.log.warn(message, { step: 'outcome/notify' }),
      );
    });
    if (opts.events.length > 0) {
      hooks.run.tapPromise(NAME, async (event, root) => {
        if (!opts.events.includes(event.event)) return;
        const env = { ZDC_EVENT: event.event, ZDC_DIR: event.path, ZDC_DATASET: event.run.dataset ?? '' };
        await notifier.tell(root, { what: event.event, name: event.name, body: runPayload(event), env }, (message) =>
          log.warn(message, { dir: event.name, step: 'run/notify' }),
        );
      });
    }
    hooks.sync.tapPromise(NAME, async (root) => {
      // A sweep is never failed by a notification.
      await notifier
        .sweep(root, log)
        .catch((error: unknown) => log.warn(`notification outbox: ${oneLine(error)}`, { step: 'sync/notify' }));
    });
  },
});
