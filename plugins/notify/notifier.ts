/**
 * The one way a notification goes out, outcome or run event: kept in the outbox first, then tried
 * at once (`attempts` tries with backoff, each within the timeout); delivered, it leaves the
 * outbox; still failing, it stays there for the sweeps (one warning). A receiver that failed its
 * last tries in this process gets one try per notification until it answers again, so that a
 * receiver that is down does not hold up every job for the whole backoff.
 */
import { BusyError, acquireLock, oneLine, retry, type Lock, type Logger, type RootContext } from '../../src/index.js';
import { Outbox } from './outbox.js';
import type { Options } from './options.js';
import { label, sameDestination, sendOnce, type Destination, type Notification } from './send.js';

type Root = Pick<RootContext, 'rootdir' | 'stateDir' | 'dryRun'>;
type Warn = (message: string) => void;

const HOUR_MS = 3_600_000;

export class Notifier {
  readonly destinations: readonly Destination[];
  /** Receivers whose last tries failed in this process. */
  private readonly down = new Set<string>();

  constructor(private readonly opts: Options) {
    this.destinations = [...(opts.command ? [{ command: opts.command }] : []), ...(opts.url !== undefined ? [{ url: opts.url }] : [])];
  }

  private get timeoutMs(): number {
    return this.opts.timeoutSeconds * 1000;
  }

  /** The longest the first tries take: the sweeps leave an entry alone until then. */
  private windowMs(): number {
    const delays = Array.from({ length: this.opts.attempts - 1 }, (_, i) => this.opts.retryDelaySeconds * 1000 * 2 ** i);
    return this.opts.attempts * this.timeoutMs + delays.reduce((a, b) => a + b, 0) + 1000;
  }

  /** Tells every receiver; never throws: a failure is one warning through `warn`. */
  async tell(root: Root, n: Notification, warn: Warn): Promise<void> {
    if (root.dryRun) return;
    for (const to of this.destinations) await this.deliver(root, to, n, warn);
  }

  private async deliver(root: Root, to: Destination, n: Notification, warn: Warn): Promise<void> {
    const outbox = new Outbox(root.stateDir, root.rootdir);
    const now = Date.now();
    const entry = {
      version: 1 as const,
      rootdir: root.rootdir,
      to,
      created: new Date(now).toISOString(),
      retryAt: new Date(now + this.windowMs()).toISOString(),
      notification: n,
    };
    let file: string | undefined;
    let keepError: unknown;
    try {
      file = await outbox.put(entry);
    } catch (error) {
      keepError = error;
    }
    const key = JSON.stringify(to);
    try {
      await retry(() => sendOnce(to, n, this.timeoutMs), {
        attempts: this.down.has(key) ? 1 : this.opts.attempts,
        firstDelayMs: this.opts.retryDelaySeconds * 1000,
        transient: () => true,
      });
      this.down.delete(key);
      if (file !== undefined)
        await outbox.remove(file).catch((e: unknown) => warn(`a sent notification stays in the outbox: ${oneLine(e)}`));
    } catch (error) {
      this.down.add(key);
      // Its first tries are over: the next sweep may send it.
      if (file !== undefined) await outbox.update(file, { ...entry, retryAt: new Date().toISOString() }).catch(() => undefined);
      const kept =
        file !== undefined
          ? `kept in ${outbox.dir}, sent again at each sweep for up to ${this.opts.outboxMaxAgeHours} h`
          : `and it could not be kept to be sent again (${oneLine(keepError)})`;
      warn(`notification failed: ${n.what} to ${label(to)}: ${oneLine(error)}; ${kept}`);
    }
  }

  /** At a sweep: sends this root's kept notifications (one try each), gives up the expired ones. */
  async sweep(root: Root, log: Logger): Promise<void> {
    if (root.dryRun) return;
    const outbox = new Outbox(root.stateDir, root.rootdir);
    if (await outbox.isEmpty()) return;
    let lock: Lock;
    try {
      lock = await acquireLock(root.stateDir, outbox.lockId);
    } catch (error) {
      if (error instanceof BusyError) return; // another process is sending them
      throw error;
    }
    try {
      await this.sendKept(outbox, log);
    } finally {
      await lock.release();
    }
  }

  private async sendKept(outbox: Outbox, log: Logger): Promise<void> {
    const now = Date.now();
    const failed = new Set<string>();
    let sent = 0;
    const entries = await outbox.list((file) => log.warn(`${file} is not a notification of this root; removed`));
    for (const { file, entry } of entries) {
      const n = entry.notification;
      if (now - Date.parse(entry.created) > this.opts.outboxMaxAgeHours * HOUR_MS) {
        log.warn(
          `gave up the notification ${n.what} to ${label(entry.to)} of ${entry.created}: undelivered for ${this.opts.outboxMaxAgeHours} h`,
          {
            dir: n.name,
          },
        );
        await outbox.remove(file);
        continue;
      }
      const key = JSON.stringify(entry.to);
      if (Date.parse(entry.retryAt) > now || failed.has(key) || !this.destinations.some((d) => sameDestination(d, entry.to))) continue;
      try {
        await sendOnce(entry.to, n, this.timeoutMs);
        await outbox.remove(file);
        this.down.delete(key);
        sent += 1;
      } catch (error) {
        // The receiver is still down: the rest waits for the next sweep.
        failed.add(key);
        this.down.add(key);
        log.warn(`notification failed: kept notifications to ${label(entry.to)} still undelivered: ${oneLine(error)}`);
      }
    }
    if (sent > 0) log.info(`sent ${sent} kept notification(s)`);
  }
}
