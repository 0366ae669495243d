/**
 * The completion plugin's rules against real run folders (files with real mtimes, in a temp
 * directory): each preset, Illumina instruments told from the folder name or RunInfo.xml /
 * RunParameters.xml, RunCompletionStatus.xml completed, stopped or unparseable, markers that are
 * not files, PacBio cells, Nanopore's final summary; and the rules doctor refuses.
 */
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { openDir } from '../../src/index.js';
import { ruleProblems } from '../../plugins/completion/doctor.js';
import { instrumentOfName, xmlElement } from '../../plugins/completion/instrument.js';
import { judge, type Judgement } from '../../plugins/completion/judge.js';
import { lastWritten } from '../../plugins/completion/look.js';
import type { Rule } from '../../plugins/completion/options.js';
import { componentRegex } from '../../plugins/completion/pattern.js';
import { presetRules } from '../../plugins/completion/presets.js';

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'completion-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** An entry of a layout: a file this many seconds old (or with this text, 600 s old), a directory, a symlink, a FIFO. */
type Entry = number | { text: string; age?: number } | 'dir' | 'fifo' | { link: string };

/** Makes the run folder `name` with `entries` (paths relative to it). */
async function layout(name: string, entries: Record<string, Entry>): Promise<string> {
  const run = join(base, name);
  await mkdir(run, { recursive: true });
  for (const [rel, entry] of Object.entries(entries)) {
    const path = join(run, rel);
    await mkdir(dirname(path), { recursive: true });
    if (entry === 'dir') await mkdir(path, { recursive: true });
    else if (entry === 'fifo') await execa('mkfifo', [path]);
    else if (typeof entry === 'object' && 'link' in entry) await symlink(entry.link, path);
    else {
      const [text, age] = typeof entry === 'number' ? ['', entry] : [entry.text, entry.age ?? 600];
      await writeFile(path, text);
      const t = (Date.now() - age * 1000) / 1000;
      await utimes(path, t, t);
    }
  }
  return run;
}

/** The verdict of `rules` on the run folder `name` made of `entries`, markers 60 s old at least. */
async function verdict(name: string, entries: Record<string, Entry>, rules: readonly Rule[]): Promise<Judgement> {
  const dir = await openDir(await layout(name, entries));
  onTestFinished(() => dir.close());
  return judge(dir, name, rules, 60_000);
}

const illumina = presetRules('illumina', 'DONE');
const status = (value: string): { text: string } => ({
  text: `<?xml version="1.0"?>\n<RunCompletionStatus xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n  <CompletionStatus>${value}</CompletionStatus>\n  <RunId>x</RunId>\n</RunCompletionStatus>\n`,
});
const RUN = { 'RunInfo.xml': 600, 'InterOp/IndexMetricsOut.bin': 5, 'Data/Intensities/BaseCalls/L001/C1.1/L001_1.cbcl': 3000 };

describe('the illumina preset, per instrument', () => {
  it('tells the instrument from the folder name: 6 or 8 digit dates, run numbers of any length, A/B or none', () => {
    expect(instrumentOfName('20240131_LH00123_0042_A22ABCDLT3')).toBe('LH00123');
    expect(instrumentOfName('240131_VH00456_17_AAAF3YHM5')).toBe('VH00456');
    expect(instrumentOfName('240131_M01234_0123_000000000-ABCDE')).toBe('M01234');
    expect(instrumentOfName('240131_A00291_0576_BHVHL5DMXY')).toBe('A00291');
    expect(instrumentOfName('140131_SN1234_0123_AC1234ACXX')).toBe('SN1234');
    expect(instrumentOfName('my run')).toBeUndefined();
    expect(instrumentOfName('2024_LH00123_0042_A22ABCDLT3')).toBeUndefined();
  });

  it('NovaSeq X: waits for CopyComplete.txt while RTAComplete.txt is there, complete once it is 60 s old', async () => {
    const name = '20240131_LH00123_0042_A22ABCDLT3';
    const waiting = await verdict(name, { ...RUN, 'RTAComplete.txt': 900 }, illumina);
    expect(waiting.verdict).toEqual({ kind: 'waiting', note: 'waiting for CopyComplete.txt (NovaSeq X (instrument LH00123))' });
    const young = await verdict('20240131_LH00123_0044_A22ABCDLT5', { 'CopyComplete.txt': 10 }, illumina);
    expect(young.verdict).toMatchObject({ kind: 'waiting', note: expect.stringContaining('CopyComplete.txt to be 60 s old') });
    const done = await verdict(
      '20240131_LH00123_0045_A22ABCDLT6',
      { 'CopyComplete.txt': 120, 'RunCompletionStatus.xml': status('CompletedAsPlanned') },
      illumina,
    );
    expect(done.verdict).toMatchObject({ kind: 'complete', note: 'CopyComplete.txt present (NovaSeq X (instrument LH00123))' });
    expect(Date.now() - Date.parse((done.verdict as { at: string }).at)).toBeGreaterThanOrEqual(119_000);
    expect(done.problems).toEqual([]);
  });

  it('NextSeq 2000: a RunCompletionStatus.xml that says the run was stopped makes it aborted, without CopyComplete.txt', async () => {
    const r = await verdict('240131_VH00456_17_AAAF3YHM5', { ...RUN, 'RunCompletionStatus.xml': status('UserEndedEarly') }, illumina);
    expect(r.verdict).toMatchObject({
      kind: 'aborted',
      note: 'RunCompletionStatus.xml says UserEndedEarly (NextSeq 1000/2000 (instrument VH00456))',
    });
  });

  it('a RunCompletionStatus.xml that does not parse is a problem told, and the markers still decide', async () => {
    const entries = { 'RunCompletionStatus.xml': { text: '<RunCompletionStatus><Comple' }, 'CopyComplete.txt': 300 };
    const r = await verdict('240131_VH00456_18_AAAF3YHM6', entries, illumina);
    expect(r.verdict.kind).toBe('complete');
    expect(r.problems).toEqual(['RunCompletionStatus.xml does not parse (no CompletionStatus)']);
  });

  it('MiSeq and HiSeq: RTAComplete.txt; NextSeq 500: RTAComplete.txt or RTAComplete.xml', async () => {
    expect((await verdict('240131_M01234_0123_000000000-ABCDE', { 'RTAComplete.txt': 300 }, illumina)).verdict.kind).toBe('complete');
    expect((await verdict('140131_SN1234_0123_AC1234ACXX', { 'RTAComplete.txt': 300 }, illumina)).verdict.kind).toBe('complete');
    const nextseq = await verdict('240131_NB501234_0456_AHXXXXBGXX', { 'RTAComplete.xml': 300 }, illumina);
    expect(nextseq.verdict).toMatchObject({ kind: 'complete', note: expect.stringContaining('NextSeq 500/550') });
    const neither = await verdict('240131_NB501234_0457_AHXXXXBGXY', { 'RunInfo.xml': 300 }, illumina);
    expect(neither.verdict.note).toBe('waiting for RTAComplete.txt or RTAComplete.xml (NextSeq 500/550 (instrument NB501234))');
  });

  it('a folder name that says nothing: the instrument from RunInfo.xml, else RunParameters.xml, else the strictest rule', async () => {
    const info = { text: '<RunInfo><Run Id="x" Number="1"><Flowcell>X</Flowcell><Instrument>LH00999</Instrument></Run></RunInfo>' };
    const fromInfo = await verdict('renamed run', { 'RunInfo.xml': info, 'CopyComplete.txt': 300 }, illumina);
    expect(fromInfo.verdict.note).toContain('NovaSeq X (instrument LH00999)');
    const params = { text: '<RunParameters>\n  <InstrumentName>A01234</InstrumentName>\n</RunParameters>' };
    const fromParams = await verdict('renamed run 2', { 'RunParameters.xml': params, 'CopyComplete.txt': 300 }, illumina);
    expect(fromParams.verdict.note).toContain('NovaSeq 6000 (instrument A01234)');
    const unknown = await verdict('renamed run 3', { 'RTAComplete.txt': 300 }, illumina);
    expect(unknown.verdict.note).toBe('waiting for CopyComplete.txt (Illumina, instrument not recognised)');
  });

  it('a marker that is a directory, a symlink or a FIFO is no marker: waiting, and the problem told', async () => {
    const name = '20240131_LH00123_0043_A22ABCDLT4';
    const asDir = await verdict(name, { 'CopyComplete.txt': 'dir' }, illumina);
    expect(asDir.verdict.kind).toBe('waiting');
    expect(asDir.problems).toEqual(['CopyComplete.txt is a dir, not a file']);
    const asLink = await verdict(`${name}0`, { 'elsewhere.txt': 300, 'CopyComplete.txt': { link: 'elsewhere.txt' } }, illumina);
    expect(asLink.verdict.kind).toBe('waiting');
    expect(asLink.problems).toEqual(['CopyComplete.txt is a symlink, not a file']);
    const fifo = await verdict(`${name}1`, { 'CopyComplete.txt': 300, 'RunCompletionStatus.xml': 'fifo' }, illumina);
    expect(fifo.verdict.kind).toBe('complete');
    expect(fifo.problems).toEqual(['RunCompletionStatus.xml is not a regular file']);
  });
});

describe('nanopore, pacbio, marker', () => {
  it('Nanopore: complete once a final_summary_*.txt is in the run directory', async () => {
    const nanopore = presetRules('nanopore', 'DONE');
    const run = { 'pod5_pass/PAO12345_pass_0.pod5': 300, 'sequencing_summary_PAO12345_abc.txt': 300 };
    const waiting = await verdict('20240131_1200_1A_PAO12345_abcdef01', run, nanopore);
    expect(waiting.verdict.note).toBe('waiting for final_summary_*.txt (MinKNOW)');
    const done = await verdict('20240131_1200_1A_PAO12345_abcdef02', { ...run, 'final_summary_PAO12345_abcdef02.txt': 120 }, nanopore);
    expect(done.verdict.kind).toBe('complete');
  });

  it('PacBio Revio: complete when every cell present has its transferdone, not with 1 of 2', async () => {
    const pacbio = presetRules('pacbio', 'DONE');
    const cellA = {
      '1_A01/metadata/m84140_230823_180019_s1.transferdone': 300,
      '1_A01/hifi_reads/m84140_230823_180019_s1.hifi_reads.bam': 300,
    };
    const half = await verdict('r84140_20230823_175301', { ...cellA, '1_B01/metadata/m84140_230823_190019_s2.metadata.xml': 300 }, pacbio);
    expect(half.verdict).toEqual({ kind: 'waiting', note: 'waiting for 1 of 2 cell(s): 1_B01/metadata/*.transferdone (Revio)' });
    const both = await verdict('r84140_20230823_175302', { ...cellA, '1_B01/metadata/m84140_230823_190019_s2.transferdone': 200 }, pacbio);
    expect(both.verdict.kind).toBe('complete');
    const none = await verdict('r84140_20230823_175303', { 'notes.txt': 300 }, pacbio);
    expect(none.verdict.note).toBe('waiting for a cell directory ([0-9]_???) (Revio)');
  });

  it('marker: the file named by the option', async () => {
    const marker = presetRules('marker', 'READY');
    expect((await verdict('any name', { READY: 300 }, marker)).verdict).toMatchObject({
      kind: 'complete',
      note: 'READY present (marker READY)',
    });
    expect((await verdict('any name 2', { DONE: 300 }, marker)).verdict.note).toBe('waiting for READY (marker READY)');
  });
});

describe('patterns, activity and what doctor refuses', () => {
  it('a pattern component matches names with *, ? and [...], never across a /', () => {
    expect(componentRegex('final_summary_*.txt').test('final_summary_PAO1_x.txt')).toBe(true);
    expect(componentRegex('[0-9]_???').test('1_A01')).toBe(true);
    expect(componentRegex('[0-9]_???').test('x_A01')).toBe(false);
    expect(componentRegex('a.b').test('axb')).toBe(false);
    expect(xmlElement('<a><ScannerID> D00123 </ScannerID></a>', ['InstrumentName', 'ScannerID'])).toBe('D00123');
  });

  it('when a run was last written to: the newest entry down to its subdirectories', async () => {
    const run = await layout('activity', { 'a.txt': 5000, 'sub/b.txt': 4000 });
    const dir = await openDir(run);
    onTestFinished(() => dir.close());
    const before = await lastWritten(dir);
    await writeFile(join(run, 'sub', 'c.txt'), 'late');
    expect(await lastWritten(dir)).toBeGreaterThanOrEqual(before);
  });

  it('rules that can never be met are told, each with its reason', () => {
    const rule = (r: Partial<Rule>): Rule => ({ name: 'r', all: [], any: [], ...r });
    expect(ruleProblems(rule({ all: ['CopyComplete.txt'] }))).toEqual([]);
    expect(ruleProblems(rule({}))).toEqual(['no marker at all: every run would be complete at once']);
    expect(ruleProblems(rule({ all: ['/data/DONE'] }))).toEqual(['/data/DONE is absolute: markers are relative to the run']);
    expect(ruleProblems(rule({ all: ['../DONE'] }))).toEqual(['../DONE has "." or "..": markers are inside the run']);
    expect(ruleProblems(rule({ all: ['done', 'done/x'] }))).toEqual(['done must be a file, but done/x needs it to be a directory']);
    expect(ruleProblems(rule({ any: [[]] }))).toEqual(['an empty set of markers']);
    expect(ruleProblems(rule({ all: ['x'], instrument: '(' }))).toEqual(['instrument: ( is not a regular expression']);
    for (const preset of ['illumina', 'nanopore', 'pacbio', 'marker'] as const)
      expect(presetRules(preset, 'DONE').flatMap(ruleProblems)).toEqual([]);
  });
});
