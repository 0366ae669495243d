/**
 * The exports file nfs-exports writes (the drop-in file, or /etc/exports in 'exports-file' mode):
 * read, planned on top of what is there, installed by compare-and-swap (cas.ts) with the previous
 * version kept as the backup, and restored when exportfs rejects it. See index.ts for the rules.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  RefusedError,
  acquireLock,
  isErrno,
  oneLine,
  quoteName,
  run,
  writeFileAtomic,
  type Logger,
  type RootContext,
} from '../../src/index.js';
import { readState, replaceIf, sameState, type FileState } from './cas.js';
import { clientsOf, inheritableClients, parseExports, planExports, undoOnTop, type Plan } from './exports.js';
import type { Options } from './options.js';

/** How many times a write is planned again on top of someone else's edit before giving up. */
const ATTEMPTS = 5;

/** A file's text as a binary string (see exports.ts): one character per byte. */
function textOf(state: FileState): string {
  return state.exists ? state.content.toString('latin1') : '';
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'latin1');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}

export class ExportsFile {
  /** The file we write. */
  readonly target: string;
  private readonly backup: string;
  private readonly exportsDir: string;
  /** Configured clients as binary strings, like the text they are written into. */
  private readonly configuredClients: string[] | undefined;

  constructor(
    private readonly opts: Options,
    private readonly stateDir: string,
  ) {
    this.target = opts.mode === 'exports-file' ? opts.exportsFile : opts.dropInFile;
    this.backup = `${this.target}${opts.backupSuffix}`;
    this.exportsDir = dirname(opts.dropInFile);
    this.configuredClients = opts.clients?.map((c) => Buffer.from(c, 'utf8').toString('latin1'));
  }

  /** exportfs is there, and the root has clients to give. */
  async check(root: RootContext): Promise<void> {
    // `exportfs -h` prints usage; what matters is that it runs (a missing one says "exportfs not found").
    await run(this.opts.exportfsCommand, ['-h'], { okExitCodes: [0, 1, 2] });
    const before = await readText(this.target);
    this.clientsFor(root.rootdir, before === undefined ? await this.otherFiles() : [before, ...(await this.otherFiles())]);
  }

  /** Every exports file exportfs reads, except the one we write. */
  private async otherFiles(): Promise<string[]> {
    const names = await readdir(this.exportsDir).catch(() => [] as string[]);
    const files = [
      this.opts.exportsFile,
      ...names
        .filter((n) => n.endsWith('.exports'))
        .sort()
        .map((n) => join(this.exportsDir, n)),
    ];
    const texts: string[] = [];
    for (const file of files) {
      if (file === this.target) continue;
      const text = await readText(file);
      if (text !== undefined) texts.push(text);
    }
    return texts;
  }

  /** The clients a new export of `rootdir` gets; throws a one-line error when there are none. */
  private clientsFor(rootdir: string, texts: readonly string[]): string[] {
    if (this.configuredClients) return this.configuredClients;
    for (const text of texts) {
      const found = clientsOf(parseExports(text), rootdir);
      if (found && found.length > 0) return inheritableClients(found);
    }
    throw new RefusedError(
      `nfs-exports: ${quoteName(rootdir)} has no line in ${this.opts.exportsFile} or ${this.exportsDir}/*.exports to take NFS clients from, and the 'clients' option is not set`,
    );
  }

  /** Serializes writers of the target file across processes. */
  async locked<T>(body: () => Promise<T>): Promise<T> {
    const id = `nfs-exports-${createHash('sha256').update(this.target).digest('hex').slice(0, 16)}`;
    const lock = await acquireLock(this.stateDir, id, { waitMs: 60_000 });
    try {
      return await body();
    } finally {
      await lock.release();
    }
  }

  /**
   * Writes `after` in place of `before` if the file is still `before` (compare-and-swap),
   * keeping `before` as the backup. Returns false, writing nothing, when the file changed
   * since it was read. When exportfs rejects the result, takes our change out again
   * without ever overwriting an edit made after our write (see restore).
   */
  async install(rootdir: string, before: FileState, after: string, log: Logger): Promise<boolean> {
    if (before.exists) await writeFileAtomic(this.backup, before.content, before.mode);
    else await mkdir(dirname(this.target), { recursive: true, mode: 0o755 });
    const swap = await replaceIf(this.target, before, Buffer.from(after, 'latin1'));
    if (!swap.ok) return false;
    try {
      await run(this.opts.exportfsCommand, ['-r']);
    } catch (error) {
      await this.restore(rootdir, before, after, swap.written, error, log);
    }
    return true;
  }

  /**
   * After exportfs rejected `ours` (written as `written`): the previous version goes back
   * only over exactly what we wrote. If someone edited the file since, our change is
   * taken out on top of their version when it touched only our block; otherwise the file
   * is left as it is. Always throws, saying which it was.
   */
  async restore(rootdir: string, before: FileState, ours: string, written: FileState, rejected: unknown, log: Logger): Promise<never> {
    const target = this.target;
    const why = `exportfs -r rejected the new ${target} (${oneLine(rejected)})`;
    let current = written;
    let merged = false;
    for (let attempt = 1; ; attempt++) {
      let goal: Buffer | undefined;
      if (sameState(current, written)) {
        goal = before.exists ? before.content : undefined;
      } else {
        const undone = undoOnTop(textOf(before), ours, textOf(current), rootdir);
        if (undone === undefined) {
          const saved = before.exists ? `the version before our change is in ${this.backup}` : 'there was no file before our change';
          throw new Error(
            `${why}; ${target} was changed by someone else after our write, so it was left as it is, not restored (${saved}): check it and run exportfs -r`,
          );
        }
        goal = Buffer.from(undone, 'latin1');
        merged = true;
      }
      const swap = await replaceIf(target, current, goal);
      if (swap.ok) break;
      if (attempt >= ATTEMPTS)
        throw new Error(
          `${why}; ${target} kept changing while we tried to take our change out, so it was left as it is: check it and run exportfs -r`,
        );
      log.warn(`${target} was changed by someone else after our write; taking our change out on top of their version`);
      current = swap.current;
    }
    await run(this.opts.exportfsCommand, ['-r']).catch((again: unknown) =>
      log.warn(`exportfs -r still fails after restoring ${target}: ${oneLine(again)}`),
    );
    throw new Error(
      merged
        ? `${why}; our change was taken out again, keeping the edit someone else made meanwhile`
        : `${why}; the previous version was restored`,
    );
  }

  /** Adds exports of `add` (and with keepOnly, removes ours of other paths). Returns what changed. */
  async update(
    ctx: RootContext,
    log: Logger,
    add: readonly string[],
    keepOnly?: ReadonlySet<string>,
    datasets?: ReadonlySet<string>,
  ): Promise<Plan> {
    for (let attempt = 1; ; attempt++) {
      const before = await readState(this.target);
      const others = await this.otherFiles();
      const text = textOf(before);
      const all = before.exists ? [text, ...others] : others;
      const plan = planExports({
        target: text,
        others,
        rootdir: ctx.rootdir,
        add,
        keepOnly,
        clients: () => this.clientsFor(ctx.rootdir, all),
        seedLines: this.opts.mode === 'exports-file' ? { datasets: datasets ?? new Set() } : undefined,
      });
      if (plan.text === text || ctx.dryRun) return plan;
      if (await this.install(ctx.rootdir, before, plan.text, log)) return plan;
      if (attempt >= ATTEMPTS)
        throw new Error(
          `${this.target} kept changing while we tried to write it (someone else is editing it); nothing was written, try again`,
        );
      log.info(`${this.target} was changed by someone else while we were writing it; planning again on top of their version`);
    }
  }
}
