/**
 * What the daemon does, published: <stateDir>/daemon.json for `status` (status-file.ts) and the
 * daemon's gauges in the Prometheus textfile (config `metrics`). The file is written on every
 * change of the queue (at most once a second), every second while jobs are in flight (their
 * phases and waits change without the queue), and every HEARTBEAT_MS at least: its updatedAt is
 * the daemon's heartbeat (status and the metrics' heartbeat tell a dead daemon from it).
 */
import { oneLine, type Config, type Logger } from '../core/index.js';
import type { MetricsTextfile } from '../metrics/textfile.js';
import { removeDaemonStatus, writeDaemonStatus, type DaemonStatus } from './status-file.js';

/** The daemon's status file is written at least this often: its updatedAt is a heartbeat. */
const HEARTBEAT_MS = 5000;

/** What the publisher reads from the daemon, at each write (a reload replaces the config). */
export interface StatusSource {
  /** Once aborted, nothing more is written (close() then removes the file). */
  readonly signal: AbortSignal;
  config(): Config;
  log(): Logger;
  /** Whether jobs are in flight (then the file is written every second). */
  busy(): boolean;
  snapshot(): Pick<DaemonStatus, 'slots' | 'maxJobs' | 'queued' | 'active'>;
}

type Gauges = { queued: number; working: number; waiting: number };

export class StatusPublisher {
  private readonly startedAt = new Date().toISOString();
  private writing: Promise<void> = Promise.resolve();
  private lastWrite = 0;
  private pendingWrite: NodeJS.Timeout | undefined;
  private readonly heartbeat: NodeJS.Timeout;
  private metrics: { textfile: string; file: MetricsTextfile } | undefined;
  private metricsFailed = '';

  constructor(private readonly source: StatusSource) {
    this.heartbeat = setInterval(() => {
      if (source.busy() || Date.now() - this.lastWrite >= HEARTBEAT_MS) this.publish();
    }, 1000);
  }

  /** Writes the status file soon (at most once a second), then the gauges. */
  publish(): void {
    if (this.pendingWrite || this.source.signal.aborted) return;
    this.pendingWrite = setTimeout(
      () => {
        this.pendingWrite = undefined;
        this.lastWrite = Date.now();
        const snapshot: DaemonStatus = {
          version: 1,
          pid: process.pid,
          startedAt: this.startedAt,
          updatedAt: new Date().toISOString(),
          ...this.source.snapshot(),
        };
        this.writing = this.writing
          .then(() => writeDaemonStatus(this.source.config().stateDir, snapshot))
          .catch((error: unknown) => this.source.log().debug(`status file not written: ${oneLine(error)}`))
          .then(() =>
            this.gauges({
              queued: snapshot.queued.length,
              working: snapshot.active.filter((a) => a.working).length,
              waiting: snapshot.active.filter((a) => !a.working).length,
            }),
          );
      },
      Math.max(0, 1000 - (Date.now() - this.lastWrite)),
    );
  }

  /** Nothing more is scheduled (at the stop). */
  halt(): void {
    clearInterval(this.heartbeat);
    if (this.pendingWrite) clearTimeout(this.pendingWrite);
  }

  /** After the last job: the last write done, the file removed, the gauges cleared. */
  async close(): Promise<void> {
    await this.writing;
    await removeDaemonStatus(this.source.config().stateDir, process.pid).catch(() => undefined);
    await this.gauges(undefined);
  }

  /** The gauge of a root's last sweep. */
  async swept(rootdir: string): Promise<void> {
    const textfile = this.source.config().metrics?.textfile;
    if (textfile === undefined) return;
    const { MetricsTextfile } = await import('../metrics/textfile.js');
    await new MetricsTextfile(textfile, this.source.config().stateDir)
      .swept(rootdir)
      .catch((error: unknown) => this.source.log().debug(`metrics textfile not written: ${oneLine(error)}`));
  }

  /** The Prometheus textfile's daemon gauges (none: the daemon stopped), written when they change. */
  private async gauges(gauges: Gauges | undefined): Promise<void> {
    const textfile = this.source.config().metrics?.textfile;
    if (textfile === undefined) return;
    try {
      if (this.metrics?.textfile !== textfile)
        this.metrics = {
          textfile,
          file: new (await import('../metrics/textfile.js')).MetricsTextfile(textfile, this.source.config().stateDir),
        };
      await this.metrics.file.daemon(gauges);
      this.metricsFailed = '';
    } catch (error) {
      // Said once per kind of failure, not at every change of the queue.
      if (oneLine(error) !== this.metricsFailed) this.source.log().warn(`metrics textfile ${textfile} not written: ${oneLine(error)}`);
      this.metricsFailed = oneLine(error);
    }
  }
}
