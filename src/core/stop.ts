/**
 * The one way a command turns SIGTERM and SIGINT into an abort: handle and the original command
 * line, reconcile, and the daemon (watch) each take the signal of `stopOnSignals()` and stop
 * safely when it fires (waits give up, copies before the commit roll back, jobs past it are left
 * for recovery). Only what is said, what a second signal does, and SIGHUP differ per command.
 */

export interface StopOptions {
  /** Said at the first SIGTERM or SIGINT, just before the signal is aborted. */
  readonly say: (signal: NodeJS.Signals) => void;
  /** A second signal: 'exit' exits at once (128 + its number), 'ignore' lets the stop go on. */
  readonly again: 'exit' | 'ignore';
  /** SIGHUP before the stop (the daemon's reload); without it, SIGHUP is left alone. */
  readonly onHangup?: () => void;
}

export interface Stop {
  /** Aborted at the first SIGTERM or SIGINT. */
  readonly signal: AbortSignal;
  /** Stops listening to the signals (they are Node's defaults again). */
  off(): void;
}

export function stopOnSignals(options: StopOptions): Stop {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      if (options.again === 'exit') process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
      return;
    }
    options.say(signal);
    controller.abort();
  };
  const onHangup = (): void => {
    if (!controller.signal.aborted) options.onHangup?.();
  };
  if (options.onHangup) process.on('SIGHUP', onHangup);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    signal: controller.signal,
    off: () => {
      if (options.onHangup) process.off('SIGHUP', onHangup);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}
