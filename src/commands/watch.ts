/**
 * watch: the daemon (src/daemon/daemon.ts) under the process's signals. SIGTERM or SIGINT stops
 * it cleanly (exit 0; a second one is ignored while the stop goes on); SIGHUP reloads the config
 * (a bad one keeps the old) and sweeps. The signals are taken only once it has started.
 */
import type { GlobalOptions } from '../app.js';
import { stopOnSignals } from '../core/stop.js';
import { Daemon } from '../daemon/daemon.js';

export async function watch(options: GlobalOptions): Promise<number> {
  const daemon = await Daemon.start(options);
  const stop = stopOnSignals({ say: (signal) => daemon.stopping(signal), again: 'ignore', onHangup: () => void daemon.reload('SIGHUP') });
  try {
    return await daemon.run(stop.signal);
  } finally {
    stop.off();
  }
}
