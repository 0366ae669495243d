/**
 * fault-injection: crash (or fail) a job on purpose at a chosen point, for drills.
 *
 * An administrator who wants to see for themselves that an interrupted conversion loses
 * nothing adds this plugin to a root of a test machine (never to a production config),
 * converts a directory, watches the process die at the chosen point, and runs
 * `zfs-dynamic-creator recover`. The test suite does the same at every step.
 *
 *   ["fault-injection", { "killAt": "swap/move-aside", "when": "after" }]
 *
 * killAt   a phase ("provision", "migrate", "swap", "publish", "cleanup") or a step as
 *          journalled by job.step: "<phase>/<step>", e.g. "migrate/copy", "swap/move-aside",
 *          "swap/mount-in-place", "cleanup/remove-original". `zfs-dynamic-creator status`
 *          and the log show the step names.
 * when     'before' (default) or 'after' the phase or step. For a phase, before = its first
 *          tap (STAGE.first), after = its last (STAGE.last). For a step, before = journalled as
 *          started but not run, after = run and journalled as done. 'during' (steps only):
 *          fire `duringMs` after the step started, if it is still running (for example: in
 *          the middle of the copy; the copy's child processes are left running, as after a
 *          real crash). Never later: the timer is cleared the moment the step's action
 *          returns or throws, so it cannot fire in another step.
 * action   'signal' (default): send `signal` (default SIGKILL) to this very process, which
 *          dies on the spot as in a power cut or an OOM kill. 'fail': throw an error instead,
 *          which exercises the ordinary failure path (rollback before the commit).
 * names    only for these directory names (default: every directory).
 * once     (default true) fire once per directory and point: a marker file under
 *          <stateDir>/fault-injection/ records that it fired, so `recover` (and a second
 *          `handle`) with the same config run through. Delete the markers to arm it again.
 * pauseSeconds  wait this long before firing (time to look around, or to hold a file open).
 */
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod';
import { JOURNALLED_PHASES, STAGE, definePlugin, isErrno, type JournalledPhase, type Job } from '../../src/index.js';

const NAME = 'fault-injection';
/** The phases it can strike in: those entered through the journal (the contract's). */
const PHASES: readonly JournalledPhase[] = JOURNALLED_PHASES;

const options = z
  .object({
    killAt: z.string().refine(
      (v) => {
        const [phase, step, more] = v.split('/');
        return (
          (PHASES as readonly string[]).includes(phase ?? '') &&
          more === undefined &&
          (step === undefined || /^[a-z][a-z0-9-]*$/.test(step))
        );
      },
      `a phase (${PHASES.join(', ')}) or "<phase>/<step>", e.g. "swap/move-aside"`,
    ),
    when: z.enum(['before', 'after', 'during']).default('before'),
    /** For when: 'during': how long after the step started. */
    duringMs: z.number().int().min(0).default(500),
    action: z.enum(['signal', 'fail']).default('signal'),
    signal: z
      .string()
      .regex(/^SIG[A-Z0-9]+$/, 'a signal name such as SIGKILL')
      .default('SIGKILL'),
    names: z.array(z.string().min(1)).optional(),
    once: z.boolean().default(true),
    pauseSeconds: z.number().min(0).default(0),
  })
  .strict()
  .refine((o) => o.when !== 'during' || o.killAt.includes('/'), {
    message: 'when: \'during\' needs a step ("<phase>/<step>")',
    path: ['when'],
  });

type Options = z.infer<typeof options>;

export default definePlugin<Options>({
  name: NAME,
  description: 'crashes or fails a job on purpose at a chosen phase or step, for recovery drills (never in production)',
  options,
  apply(hooks, { options: opts, log, stateDir, dryRun }) {
    if (dryRun) return;
    const [phase, step] = opts.killAt.split('/') as [JournalledPhase, string | undefined];
    log.warn(`fault injection is armed: ${opts.action === 'fail' ? 'fail' : `${opts.signal}`} ${opts.when} ${opts.killAt}`);

    const applies = (job: Job): boolean => opts.names === undefined || opts.names.includes(job.name);

    /** True when this is the first time for this job and point (or `once` is off). */
    const firstTime = async (job: Job): Promise<boolean> => {
      if (!opts.once) return true;
      const dir = join(stateDir, 'fault-injection');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const marker = join(dir, `${job.id}.${opts.killAt.replace('/', '.')}.${opts.when}`);
      try {
        const handle = await open(marker, 'wx', 0o600);
        await handle.sync();
        await handle.close();
        return true;
      } catch (error) {
        if (isErrno(error, 'EEXIST')) return false;
        throw error;
      }
    };

    const fire = async (job: Job, where: string): Promise<void> => {
      if (!applies(job) || !(await firstTime(job))) return;
      if (opts.pauseSeconds > 0) {
        job.log.warn(`fault injection: pausing ${opts.pauseSeconds} s ${where}`, { step: opts.killAt });
        await sleep(opts.pauseSeconds * 1000);
      }
      if (opts.action === 'fail') {
        job.log.warn(`fault injection: failing ${where}`, { step: opts.killAt });
        throw new Error(`fault injection: failed ${where} on purpose`);
      }
      job.log.warn(`fault injection: sending ${opts.signal} to this process ${where}`, { step: opts.killAt });
      process.kill(process.pid, opts.signal as NodeJS.Signals);
      // SIGKILL never returns; a signal the process survives lets the job go on.
      await sleep(100);
    };

    if (step === undefined) {
      const hook = hooks[phase];
      if (opts.when === 'before') hook.tapPromise({ name: NAME, stage: STAGE.first }, (job) => fire(job, `before the ${phase} phase`));
      else hook.tapPromise({ name: NAME, stage: STAGE.last }, (job) => fire(job, `after the ${phase} phase`));
      return;
    }

    /** The armed 'during' timers, by job: cleared the moment their step ends, however it ends. */
    const timers = new Map<string, NodeJS.Timeout>();
    hooks.step.tapPromise(NAME, async (job, name, when) => {
      if (name !== opts.killAt) return;
      if (opts.when === 'during') {
        if (when === 'end') {
          clearTimeout(timers.get(job.id));
          timers.delete(job.id);
          return;
        }
        if (when !== 'before' || !applies(job) || !(await firstTime(job))) return;
        // Taken now, while this tap runs, so that the line names this plugin when the timer fires.
        const jobLog = job.log;
        const timer = setTimeout(() => {
          timers.delete(job.id);
          jobLog.warn(`fault injection: sending ${opts.signal} to this process during ${name}`, { step: name });
          process.kill(process.pid, opts.signal as NodeJS.Signals);
        }, opts.duringMs);
        timer.unref();
        timers.set(job.id, timer);
        return;
      }
      if (when === opts.when) await fire(job, `${when} ${name}`);
    });
  },
});
