/** status: what is in flight or interrupted, and how many directories wait to be converted. */
import type { App } from '../app.js';
import { RootEngine } from '../core/index.js';
import { isLocked } from '../core/lock.js';
import { readDaemonStatus } from '../daemon/status-file.js';

export async function status(app: App, options: { json: boolean }): Promise<number> {
  const roots = [];
  for (const engine of app.engines) {
    const records = await engine.journal.list(engine.context.rootdir);
    const survey = await engine.survey();
    const jobs = [];
    for (const r of records) {
      const running = await isLocked(app.config.stateDir, r.id);
      jobs.push({ name: r.name, phase: r.phase, status: running ? 'running' : r.status, committed: r.committed, filesystem: r.filesystem, aside: r.aside, error: r.error, updatedAt: r.updatedAt });
    }
    roots.push({
      rootfs: engine.context.rootfs,
      rootdir: engine.context.rootdir,
      filesystems: survey.filesystems.size,
      waiting: RootEngine.candidates(survey),
      leftovers: [...survey.leftovers],
      jobs,
    });
  }
  const daemon = await readDaemonStatus(app.config.stateDir);
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ config: app.config.source, stateDir: app.config.stateDir, daemon: daemon ?? null, roots }, null, 2)}\n`);
    return 0;
  }
  const lines: string[] = [];
  if (daemon) {
    const waiting = daemon.active.filter((a) => !a.working);
    lines.push(
      `daemon (pid ${daemon.pid}, since ${daemon.startedAt}): ${daemon.active.length - waiting.length} of ${daemon.slots.size} work slot(s) busy, ${waiting.length} job(s) waiting, ${daemon.queued.length} queued (as of ${daemon.updatedAt})`,
    );
    for (const a of daemon.active) lines.push(`  ${(a.working ? 'working' : 'waiting').padEnd(12)} ${JSON.stringify(`${a.rootdir}/${a.name}`)} phase ${a.phase}${a.waiting ? `, waiting for ${a.waiting}` : ''} (since ${a.since})`);
    for (const q of daemon.queued) lines.push(`  ${'queued'.padEnd(12)} ${JSON.stringify(`${q.rootdir}/${q.name}`)}`);
  }
  for (const root of roots) {
    lines.push(`${root.rootdir} (${root.rootfs}): ${root.filesystems} filesystem(s), ${root.waiting.length} directory(ies) waiting, ${root.jobs.length} job(s) in the journal`);
    for (const name of root.waiting) lines.push(`  waiting      ${JSON.stringify(name)}`);
    for (const j of root.jobs) lines.push(`  ${j.status.padEnd(12)} ${JSON.stringify(j.name)} phase ${j.phase}${j.committed ? ', committed' : ''}${j.error ? `: ${j.error}` : ''}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
