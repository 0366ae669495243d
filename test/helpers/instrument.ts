/**
 * A simulated sequencing instrument, for the tests of issue 20 ("Safety across a long run"): a
 * process running as nobody (as instruments and their copy services write, see writers.ts) that
 * makes a run folder as an Illumina instrument does, at a compressed time scale:
 *
 * - RunInfo.xml and RunParameters.xml first, by absolute path; then it moves its working
 *   directory into the run folder and writes on through relative paths (some by absolute path
 *   too, unless `byPath: false`);
 * - cycles: a new subdirectory Data/Intensities/BaseCalls/L001/C<n>.1 with its tile files
 *   (relative paths), a new Thumbnail_Images/L001/C<n>.1 (absolute paths), InterOp/*.bin rewritten
 *   in place (same inode, from offset 0, one through each kind of path), Logs/Run.log appended by
 *   path and Logs/RTA.log appended through a descriptor held open from the first cycle to the end;
 * - a silent gap after each cycle: a time, or 'hold' (until the test says go, so that a test can
 *   keep the gap open until the conversion it expects there is over);
 * - RTAComplete.txt, then CopyComplete.txt, each after its own delay (the marker timing, a
 *   parameter, so that a completion policy's test can run the same body);
 * - then, as a separate process, a late writer (a demultiplexer): InterOp/IndexMetricsOut.bin and
 *   Analysis/1/... by absolute path, from its own working directory.
 *
 * Each records what it wrote (path -> final SHA-256 and size, and the directories it made) and
 * exits non-zero at the first write that fails, so that "every write succeeded" is checked by
 * the writer itself. The layout follows Illumina's lists of run folder contents (NextSeq 1000/2000:
 * knowledge.illumina.com article 000002443, Data/Intensities/BaseCalls/L001/Cx.1/L001_1.cbcl and
 * Analysis/<n>/Data/Reports/; the InterOp library's docs read InterOp/IndexMetricsOut.bin,
 * illumina.github.io/interop/index_v2.html; NextSeq 500/550 output folders: Logs/,
 * InterOp/, Thumbnail_Images/, RunInfo.xml, RunParameters.xml); the file contents are random and
 * tiny.
 */
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { onTestFinished } from 'vitest';
import { NOBODY, asNobody } from './attacker.js';
import { describeTree } from './tree.js';

export interface InstrumentPlan {
  /** The run folder, made by the instrument (its parent must let nobody make it). */
  readonly dir: string;
  readonly cycles: number;
  /** Base call files per cycle (L001_1.cbcl, …). */
  readonly tiles: number;
  /** Between two writes of a cycle (shorter than the quiet period). */
  readonly writeGapMs: number;
  /** The gap after cycle n is gaps[n - 1] (the last one repeats): milliseconds, or 'hold' until go(). */
  readonly gaps: readonly (number | 'hold')[];
  /** After the last cycle: RTAComplete.txt after rtaCompleteMs, CopyComplete.txt copyCompleteMs later. */
  readonly markers: { readonly rtaCompleteMs: number; readonly copyCompleteMs: number };
  /**
   * false: after RunInfo.xml and RunParameters.xml, every write goes through the working directory
   * (none by path: a path-based write can fail in the instant of the swap, docs/guarantees.md), so
   * the cycles can go on while the run is converted. Default true: some by absolute path.
   */
  readonly byPath?: boolean;
}

export interface LatePlan {
  readonly dir: string;
  /** FASTQ files written under Analysis/1. */
  readonly files: number;
  readonly writeGapMs: number;
}

export interface Written {
  /** Relative path -> the file as last written. */
  readonly files: ReadonlyMap<string, { readonly sha256: string; readonly size: number }>;
  readonly dirs: ReadonlySet<string>;
}

export interface Instrument {
  /** Resolves once the instrument has said `line` ('cycle 3', 'gap 2', 'gap 2 hold', 'RTAComplete', …). */
  reached(line: string): Promise<void>;
  /** Ends a held gap. */
  go(): void;
  /** What it wrote, once it has exited; rejects (with its stderr) when a write failed. */
  readonly written: Promise<Written>;
}

// The writer itself, plain JavaScript run by `node -e` as nobody: argv[1] is 'instrument' or
// 'late', argv[2] the plan (JSON). Its stdout: one line per step, then `written <json>`.
const SCRIPT = String.raw`
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const role = process.argv[1], plan = JSON.parse(process.argv[2]), dir = plan.dir;
const files = new Map(), dirs = new Set();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (line) => process.stdout.write(line + '\n');
const fail = (what, rel, e) => { process.stderr.write('write failed: ' + what + ' ' + rel + ': ' + (e.code || e.message) + '\n'); process.exit(1); };
const at = (rel, via) => (via === 'cwd' ? rel : path.join(dir, rel));
const data = (n) => crypto.randomBytes(n);
const P = plan.byPath === false ? 'cwd' : 'path';
function mkdirp(rel, via) {
  try { fs.mkdirSync(at(rel, via), { recursive: true }); } catch (e) { fail('mkdir', rel, e); }
  for (let d = rel; d !== '.'; d = path.dirname(d)) dirs.add(d);
}
function writeAll(fd, buf, pos, what, rel) {
  const n = fs.writeSync(fd, buf, 0, buf.length, pos);
  if (n !== buf.length) fail(what, rel, new Error('short write: ' + n + ' of ' + buf.length));
}
function write(rel, buf, via) {
  try { fs.writeFileSync(at(rel, via), buf); } catch (e) { fail('write', rel, e); }
  files.set(rel, buf);
}
function rewrite(rel, buf, via) {
  try {
    const fd = fs.openSync(at(rel, via), 'r+');
    writeAll(fd, buf, 0, 'rewrite', rel);
    fs.ftruncateSync(fd, buf.length);
    fs.closeSync(fd);
  } catch (e) { fail('rewrite', rel, e); }
  files.set(rel, buf);
}
function appended(rel, buf) { files.set(rel, Buffer.concat([files.get(rel) || Buffer.alloc(0), buf])); }
function append(rel, text, via) {
  const buf = Buffer.from(text);
  try { fs.appendFileSync(at(rel, via), buf); } catch (e) { fail('append', rel, e); }
  appended(rel, buf);
}
function finish() {
  const out = { files: {}, dirs: [...dirs] };
  for (const [rel, buf] of files) out.files[rel] = { sha256: crypto.createHash('sha256').update(buf).digest('hex'), size: buf.length };
  say('written ' + JSON.stringify(out));
  process.exit(0);
}
const lines = [];
let wake = null;
function nextLine() {
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((r) => (wake = r));
}
if (role === 'instrument') {
  require('readline').createInterface({ input: process.stdin }).on('line', (l) => { if (wake) { const w = wake; wake = null; w(l); } else lines.push(l); });
}
const metrics = (cycle) => Buffer.concat([Buffer.from([3, 10]), data(16 * cycle)]);
async function instrument() {
  try { fs.mkdirSync(dir); } catch (e) { fail('mkdir', '.', e); }
  say('started');
  write('RunInfo.xml', Buffer.from('<?xml version="1.0"?>\n<RunInfo Version="6"><Run Id="' + path.basename(dir) + '"/></RunInfo>\n'), 'path');
  write('RunParameters.xml', Buffer.from('<?xml version="1.0"?>\n<RunParameters><Cycles>' + plan.cycles + '</Cycles></RunParameters>\n'), 'path');
  process.chdir(dir);
  for (const d of ['Logs', 'InterOp', 'Data/Intensities/BaseCalls/L001']) mkdirp(d, 'cwd');
  write('InterOp/TileMetricsOut.bin', metrics(0), 'cwd');
  write('InterOp/ErrorMetricsOut.bin', metrics(0), P);
  let held;
  try { held = fs.openSync('Logs/RTA.log', 'a'); } catch (e) { fail('open', 'Logs/RTA.log', e); }
  files.set('Logs/RTA.log', Buffer.alloc(0));
  const log = (text) => { const buf = Buffer.from(text + '\n'); try { writeAll(held, buf, null, 'append (held open)', 'Logs/RTA.log'); } catch (e) { fail('append (held open)', 'Logs/RTA.log', e); } appended('Logs/RTA.log', buf); };
  for (let c = 1; c <= plan.cycles; c++) {
    const cdir = 'Data/Intensities/BaseCalls/L001/C' + c + '.1';
    mkdirp(cdir, 'cwd');
    for (let t = 1; t <= plan.tiles; t++) {
      write(cdir + '/L001_' + t + '.cbcl', data(512 + t), 'cwd');
      log('cycle ' + c + ' tile ' + t);
      await sleep(plan.writeGapMs);
    }
    const thumbs = 'Thumbnail_Images/L001/C' + c + '.1';
    mkdirp(thumbs, P);
    write(thumbs + '/s_1_1101_green.jpg', data(300), P);
    rewrite('InterOp/TileMetricsOut.bin', metrics(c), 'cwd');
    rewrite('InterOp/ErrorMetricsOut.bin', metrics(c), P);
    append('Logs/Run.log', 'cycle ' + c + ' done\n', 'cwd');
    say('cycle ' + c);
    if (c === plan.cycles) break;
    const gap = plan.gaps[Math.min(c, plan.gaps.length) - 1];
    if (gap === 'hold') { say('gap ' + c + ' hold'); await nextLine(); }
    else { say('gap ' + c); await sleep(gap); }
  }
  await sleep(plan.markers.rtaCompleteMs);
  log('run complete');
  try { fs.closeSync(held); } catch (e) { fail('close', 'Logs/RTA.log', e); }
  write('RTAComplete.txt', Buffer.from('RTA 4.0 complete\n'), 'cwd');
  if (P === 'path') process.chdir('/');
  say('RTAComplete');
  await sleep(plan.markers.copyCompleteMs);
  write('CopyComplete.txt', Buffer.alloc(0), P);
  process.chdir('/');
  say('CopyComplete');
  finish();
}
async function late() {
  write('InterOp/IndexMetricsOut.bin', metrics(3), 'path');
  mkdirp('Analysis/1/Data/fastq', 'path');
  for (let i = 1; i <= plan.files; i++) {
    write('Analysis/1/Data/fastq/S' + i + '_L001_R1_001.fastq.gz', data(700 + i), 'path');
    await sleep(plan.writeGapMs);
  }
  mkdirp('Analysis/1/Data/Reports', 'path');
  write('Analysis/1/Data/Reports/Demultiplex_Stats.csv', Buffer.from('Lane,SampleID,# Reads\n1,S1,1000\n'), 'path');
  finish();
}
(role === 'instrument' ? instrument() : late()).catch((e) => fail('unexpected', '-', e));
`;

function parseWritten(stdout: string): Written {
  const last = stdout.split('\n').find((l) => l.startsWith('written '));
  if (last === undefined) throw new Error(`the writer said nothing of what it wrote:\n${stdout}`);
  const raw = JSON.parse(last.slice('written '.length)) as { files: Record<string, { sha256: string; size: number }>; dirs: string[] };
  return { files: new Map(Object.entries(raw.files)), dirs: new Set(raw.dirs) };
}

function spawn(role: 'instrument' | 'late', plan: InstrumentPlan | LatePlan) {
  const [command, args] = asNobody(process.execPath, ['-e', SCRIPT, role, JSON.stringify(plan)]);
  const child = execa(command, args, { cwd: '/', reject: false, stdin: 'pipe' });
  // A test that fails half-way leaves no writer behind to meet the next test's daemon.
  onTestFinished(() => void child.kill('SIGKILL'));
  const written = child.then((r) => {
    if (r.exitCode !== 0) throw new Error(`the ${role} failed (exit ${r.exitCode ?? r.signal}): ${String(r.stderr)}`);
    return parseWritten(String(r.stdout));
  });
  written.catch(() => undefined); // for a test that ends before it asks
  return { child, written };
}

/** Starts the instrument (it makes plan.dir, as nobody); killed when the test ends. */
export function startInstrument(plan: InstrumentPlan): Instrument {
  const { child, written } = spawn('instrument', plan);
  const said: string[] = [];
  let exited = false;
  void child.then(() => (exited = true));
  createInterface({ input: child.stdout! }).on('line', (l) => said.push(l));
  return {
    async reached(line) {
      while (!said.includes(line)) {
        if (exited) throw new Error(`the instrument ended before '${line}': ${String((await child).stderr)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    go: () => void child.stdin!.write('go\n'),
    written,
  };
}

/** Runs the late writer (a demultiplexer) in plan.dir to its end. */
export function lateWriter(plan: LatePlan): Promise<Written> {
  return spawn('late', plan).written;
}

/** What several writers left, the later ones' files over the earlier ones'. */
export function merged(...all: Written[]): Written {
  return {
    files: new Map(all.flatMap((w) => [...w.files])),
    dirs: new Set(all.flatMap((w) => [...w.dirs])),
  };
}

/**
 * The differences between the tree at `dir` and what the writers wrote: files missing or not as
 * last written, entries nobody wrote (a duplicate, a conflict copy), entries not owned by nobody.
 */
export async function differencesFrom(dir: string, written: Written): Promise<string[]> {
  const tree = await describeTree(dir);
  const out: string[] = [];
  for (const [rel, e] of tree) {
    if (rel === '.') continue;
    if (e.uid !== NOBODY) out.push(`${rel}: owned by ${e.uid}`);
    const want = written.files.get(rel);
    if (e.type === 'dir' && !written.dirs.has(rel)) out.push(`${rel}: a directory nobody made`);
    else if (e.type === 'file' && want === undefined) out.push(`${rel}: a file nobody wrote`);
    else if (e.type === 'file' && (e.sha !== want?.sha256 || e.size !== want?.size))
      out.push(`${rel}: not as last written (${e.size} bytes, want ${want?.size})`);
    else if (e.type !== 'dir' && e.type !== 'file') out.push(`${rel}: a ${e.type}`);
  }
  for (const rel of written.files.keys()) if (tree.get(rel)?.type !== 'file') out.push(`${rel}: missing`);
  for (const rel of written.dirs) if (tree.get(rel)?.type !== 'dir') out.push(`${rel}: directory missing`);
  return out.sort();
}
