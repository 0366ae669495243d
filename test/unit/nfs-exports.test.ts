/** The exports(5) format: parsing, escaping, our block, planning; compare-and-swap writes; the plugin's write/restore flow. */
import { appendFile, chmod, mkdtemp, open, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHooks } from '../../src/core/hooks.js';
import { createLogger } from '../../src/core/logger.js';
import type { LogRecord, RootContext, Survey } from '../../src/core/index.js';
import plugin from '../../plugins/nfs-exports/index.js';
import { readState, replaceIf, sameState } from '../../plugins/nfs-exports/cas.js';
import {
  blockMarkers,
  clientsOf,
  escapePath,
  exportedPaths,
  inheritableClients,
  ownedBlock,
  parseClients,
  parseExports,
  planExports,
  tokenize,
  undoOnTop,
  unescapeBytes,
  unescapePath,
  withBlock,
} from '../../plugins/nfs-exports/exports.js';
import { parseExportfsVerbose } from '../helpers/exports.js';
import { withRuns } from '../helpers/runs.js';

describe('escapePath / unescapePath', () => {
  it('escapes space, tab, newline, backslash, # and " as exportfs octal', () => {
    expect(escapePath('/a b')).toBe('/a\\040b');
    expect(escapePath('/a\tb')).toBe('/a\\011b');
    expect(escapePath('/a\nb')).toBe('/a\\012b');
    expect(escapePath('/a\\b')).toBe('/a\\134b');
    expect(escapePath('/a#b')).toBe('/a\\043b');
    expect(escapePath('/a"b')).toBe('/a\\042b');
  });

  it('escapes everything outside the safe set, byte by byte', () => {
    expect(escapePath('/x *(rw,no_root_squash)')).toBe('/x\\040\\052\\050rw,no_root_squash\\051');
    expect(escapePath('/$(touch /tmp/pwned)')).toBe('/\\044\\050touch\\040/tmp/pwned\\051');
    expect(escapePath('/é')).toBe('/\\303\\251');
    expect(escapePath(Buffer.from([0x2f, 0xe9]))).toBe('/\\351');
    expect(escapePath('/@%')).toBe('/\\100\\045');
    expect(escapePath('/plain-name_1.2:3')).toBe('/plain-name_1.2:3');
  });

  it('never yields whitespace, quotes, parentheses or #', () => {
    const nasty = '/ \t\n"\'()#*\\$`;|&<>{}[]!?@%^\u0001\u007f';
    expect(escapePath(nasty)).toMatch(/^[A-Za-z0-9/_.,:+=~\\-]+$/);
  });

  it('round-trips', () => {
    for (const p of ['/a b', '/a\tb\nc', '/back\\slash', '/#h', '/q"x', '/-dash', '/é ü', '/x *(rw)']) {
      expect(unescapePath(escapePath(p))).toBe(p);
    }
    expect(unescapeBytes(escapePath(Buffer.from([0x2f, 0xff, 0x20])))).toEqual(Buffer.from([0x2f, 0xff, 0x20]));
  });

  it('unescapes quotes and leaves a lone backslash alone, as exportfs does', () => {
    expect(unescapePath('"/a b"')).toBe('/a b');
    expect(unescapePath('/a\\x')).toBe('/a\\x');
    expect(unescapePath('/a\\04')).toBe('/a\\04');
  });
});

describe('parseExports', () => {
  const text = [
    '# /etc/exports: comment',
    '',
    '/srv/root 10.0.0.0/8(rw,no_subtree_check) \\',
    '    192.168.1.1(ro) # trailing comment',
    '"/srv/with space" *(ro)',
    '/srv/esc\\040aped 1.2.3.4(rw)',
    '-rw,sync',
  ].join('\n');

  it('joins continuation lines and drops comments', () => {
    const entries = parseExports(text);
    expect(entries.map((e) => [e.first, e.last, e.path ?? null])).toEqual([
      [0, 0, null],
      [1, 1, null],
      [2, 3, '/srv/root'],
      [4, 4, '/srv/with space'],
      [5, 5, '/srv/esc aped'],
      [6, 6, null],
    ]);
    expect(entries[2]!.clients).toEqual(['10.0.0.0/8(rw,no_subtree_check)', '192.168.1.1(ro)']);
  });

  it('finds the root line clients, with or without a trailing slash', () => {
    const entries = parseExports(text);
    expect(clientsOf(entries, '/srv/root/')).toEqual(['10.0.0.0/8(rw,no_subtree_check)', '192.168.1.1(ro)']);
    expect(clientsOf(entries, '/srv/esc aped')).toEqual(['1.2.3.4(rw)']);
    expect(clientsOf(entries, '/srv/none')).toBeUndefined();
    expect(exportedPaths(text)).toEqual(new Set(['/srv/root', '/srv/with space', '/srv/esc aped']));
  });

  it('tokenizes with quotes', () => {
    expect(tokenize('"/a b" h(ro)  # x y')).toEqual(['"/a b"', 'h(ro)']);
  });

  it('drops fsid from inherited clients', () => {
    expect(inheritableClients(['a(rw,fsid=0,sync)', 'b(fsid=1)', 'c'])).toEqual(['a(rw,sync)', 'b()', 'c']);
  });
});

describe('parseClients', () => {
  it('accepts host(options) tokens', () => {
    expect(parseClients('10.0.0.0/8(rw,no_subtree_check)  host1(ro) *(ro,sec=krb5:krb5i)')).toEqual({
      clients: ['10.0.0.0/8(rw,no_subtree_check)', 'host1(ro)', '*(ro,sec=krb5:krb5i)'],
    });
  });
  it('refuses spaces inside, missing options, quotes, comments', () => {
    for (const bad of ['host(rw, ro)', 'host', '(rw)', 'h("x")', 'h(rw)#x', '', 'a(rw)b(ro)']) {
      expect(parseClients(bad)).toHaveProperty('problem');
    }
  });
});

describe('our block', () => {
  const base = '# comment\n/srv/other 1.2.3.4(rw) \\\n  5.6.7.8(ro)\n';
  it('adds a block and keeps every other line byte for byte', () => {
    const out = withBlock(base, '/srv/root', new Map([['/srv/root/a b', ['*(ro)']]]));
    expect(out.startsWith(base)).toBe(true);
    const { begin, end } = blockMarkers('/srv/root');
    expect(out).toContain(`${begin}\n`);
    expect(out).toContain('/srv/root/a\\040b *(ro)\n');
    expect(out.endsWith(`${end}\n`)).toBe(true);
    expect(ownedBlock(out, '/srv/root').lines).toEqual(new Map([['/srv/root/a b', ['*(ro)']]]));
    expect(withBlock(out, '/srv/root', new Map())).toBe(base);
  });

  it('does not let a trailing continuation swallow the block', () => {
    const out = withBlock('/srv/x 1.1.1.1(ro) \\', '/r', new Map([['/r/a', ['*(ro)']]]));
    expect(
      parseExports(out)
        .filter((e) => e.path)
        .map((e) => e.path),
    ).toEqual(['/srv/x', '/r/a']);
  });

  it('keeps blocks of other roots apart', () => {
    let text = withBlock('', '/r1', new Map([['/r1/a', ['*(ro)']]]));
    text = withBlock(text, '/r2', new Map([['/r2/b', ['*(ro)']]]));
    text = withBlock(
      text,
      '/r1',
      new Map([
        ['/r1/a', ['*(ro)']],
        ['/r1/c', ['*(ro)']],
      ]),
    );
    expect([...ownedBlock(text, '/r1').lines.keys()]).toEqual(['/r1/a', '/r1/c']);
    expect([...ownedBlock(text, '/r2').lines.keys()]).toEqual(['/r2/b']);
  });

  it('escapes the rootdir in the markers', () => {
    expect(blockMarkers('/r oot\n#').begin).toBe('# BEGIN zfs-dynamic-creator /r\\040oot\\012\\043');
  });
});

describe('planExports', () => {
  const clients = () => ['10.0.0.0/8(rw)'];
  it('is idempotent: publishing twice gives one line', () => {
    const once = planExports({ target: '', others: [], rootdir: '/r', add: ['/r/a b'], clients });
    expect(once.added).toEqual(['/r/a b']);
    const twice = planExports({ target: once.text, others: [], rootdir: '/r', add: ['/r/a b'], clients });
    expect(twice.added).toEqual([]);
    expect(twice.text).toBe(once.text);
    expect(once.text.split('\n').filter((l) => l.startsWith('/r/a\\040b'))).toHaveLength(1);
  });

  it('does not add what another line already exports', () => {
    const plan = planExports({
      target: '/r/a 1.1.1.1(ro)\n',
      others: ['/r/b *(ro)\n'],
      rootdir: '/r',
      add: ['/r/a', '/r/b', '/r/c'],
      clients,
    });
    expect(plan.added).toEqual(['/r/c']);
  });

  it('removes only our stale lines', () => {
    const start = withBlock(
      '/r/legacy 1.1.1.1(ro)\n',
      '/r',
      new Map([
        ['/r/gone', ['*(ro)']],
        ['/r/here', ['*(ro)']],
      ]),
    );
    const plan = planExports({
      target: start,
      others: [],
      rootdir: '/r',
      add: ['/r/here', '/r/new'],
      keepOnly: new Set(['/r/here', '/r/new']),
      clients,
    });
    expect(plan.removed).toEqual(['/r/gone']);
    expect(plan.added).toEqual(['/r/new']);
    expect(plan.text).toContain('/r/legacy 1.1.1.1(ro)\n');
    expect(exportedPaths(plan.text)).toEqual(new Set(['/r/legacy', '/r/here', '/r/new']));
  });

  it('asks for clients only when something is added', () => {
    const none = () => {
      throw new Error('no clients');
    };
    expect(planExports({ target: '', others: [], rootdir: '/r', add: [], clients: none }).text).toBe('');
    expect(() => planExports({ target: '', others: [], rootdir: '/r', add: ['/r/x'], clients: none })).toThrow('no clients');
  });
});

describe('parseExportfsVerbose', () => {
  it('reads short padded paths, long paths, spaces and newlines', () => {
    const out =
      '/tmp/ex a     \t10.0.0.0/8(sync,rw)\n' +
      '/tmp/a very long directory name\n\t\t127.0.0.1(sync,ro)\n' +
      '/tmp/nl\nx    \t127.0.0.1(ro)\n' +
      '/tmp/tab\tx    \t<world>(ro)\n';
    expect(parseExportfsVerbose(out)).toEqual([
      { path: '/tmp/ex a', client: '10.0.0.0/8' },
      { path: '/tmp/a very long directory name', client: '127.0.0.1' },
      { path: '/tmp/nl\nx', client: '127.0.0.1' },
      { path: '/tmp/tab\tx', client: '<world>' },
    ]);
  });
});

describe('planExports, seed-compatible mode (exports-file): lines under rootdir the tool did not mark', () => {
  const clients = () => ['10.0.0.0/8(rw,no_subtree_check)'];
  // What a site moving from the original script has: the root's line, the script's unmarked
  // lines for its children (one continued, one with a trailing slash), and lines of others.
  const head = ['# site exports', '/r 10.0.0.0/8(rw,no_subtree_check,fsid=1) # root', '/elsewhere 1.2.3.4(ro)'];
  const seedGone = ['/r/gone 10.0.0.0/8(rw) \\', '    192.168.0.1(ro)'];
  const seedHere = '/r/here/ 9.9.9.9(ro)';
  const deeper = '/r/here/deep 1.1.1.1(ro)';
  const midJob = '/r/converting 1.1.1.1(ro)';
  const plain = '\t"/r/other name" *(ro)   # someone\'s';
  const text = [...head, ...seedGone, seedHere, deeper, midJob, plain, '-defaults', '# end', ''].join('\n');

  it('removes a stale child line outside our block (continuation included), updates the others in place, keeps every other line byte for byte', () => {
    const live = new Set(['/r/here', '/r/new']);
    const plan = planExports({
      target: text,
      others: [],
      rootdir: '/r',
      add: [...live],
      keepOnly: live,
      clients,
      seedLines: { datasets: new Set(['/r/converting']) },
    });
    expect(plan.removed.sort()).toEqual(['/r/gone', '/r/other name']);
    expect(plan.updated).toEqual(['/r/here']);
    expect(plan.added).toEqual(['/r/new']);
    const { begin, end } = blockMarkers('/r');
    const expected = [
      ...head,
      '/r/here/ 10.0.0.0/8(rw,no_subtree_check)',
      deeper,
      midJob,
      '-defaults',
      '# end',
      begin,
      '# Managed by zfs-dynamic-creator (nfs-exports plugin): lines in this block are rewritten.',
      '/r/new 10.0.0.0/8(rw,no_subtree_check)',
      end,
      '',
    ].join('\n');
    expect(plan.text).toBe(expected);
    // Again: nothing to do.
    const again = planExports({
      target: plan.text,
      others: [],
      rootdir: '/r',
      add: [...live],
      keepOnly: live,
      clients,
      seedLines: { datasets: new Set(['/r/converting']) },
    });
    expect(again).toEqual({ text: plan.text, added: [], removed: [], updated: [] });
  });

  it('removes a stale child line inside our block and outside it alike', () => {
    const start = withBlock('/r/a *(ro)\n', '/r', new Map([['/r/b', ['*(ro)']]]));
    const plan = planExports({
      target: start,
      others: [],
      rootdir: '/r',
      add: [],
      keepOnly: new Set(),
      clients,
      seedLines: { datasets: new Set() },
    });
    expect(plan.removed.sort()).toEqual(['/r/a', '/r/b']);
    expect(plan.text).toBe('');
  });

  it('publishing a path the original script already exported updates that line in place instead of adding a second one', () => {
    const target = '# x\n/r 10.0.0.0/8(rw,no_subtree_check)\n  /r/run1   old(ro) \n/r/run2 1.1.1.1(ro)\n';
    const plan = planExports({ target, others: [], rootdir: '/r', add: ['/r/run1'], clients, seedLines: { datasets: new Set() } });
    expect(plan).toEqual({
      text: '# x\n/r 10.0.0.0/8(rw,no_subtree_check)\n  /r/run1 10.0.0.0/8(rw,no_subtree_check)\n/r/run2 1.1.1.1(ro)\n',
      added: [],
      removed: [],
      updated: ['/r/run1'],
    });
    // Already right: the text is returned as it is.
    expect(
      planExports({ target: plan.text, others: [], rootdir: '/r', add: ['/r/run1'], clients, seedLines: { datasets: new Set() } }).text,
    ).toBe(plan.text);
    // Without the seed rule (drop-in mode) such a line is somebody else's: left alone, nothing added.
    expect(planExports({ target, others: [], rootdir: '/r', add: ['/r/run1'], keepOnly: new Set(), clients })).toEqual({
      text: target,
      added: [],
      removed: [],
      updated: [],
    });
  });

  it("leaves lines in another root's marked block to that root", () => {
    const target = withBlock(
      '/r 1.1.1.1(rw)\n',
      '/r/nested',
      new Map([
        ['/r/nested', ['1.1.1.1(ro)']],
        ['/r/gone', ['2.2.2.2(ro)']],
      ]),
    );
    const plan = planExports({
      target,
      others: [],
      rootdir: '/r',
      add: ['/r/gone'],
      keepOnly: new Set(['/r/gone']),
      clients,
      seedLines: { datasets: new Set() },
    });
    expect(plan).toEqual({ text: target, added: [], removed: [], updated: [] });
    const mine = planExports({
      target,
      others: [],
      rootdir: '/r',
      add: [],
      keepOnly: new Set(),
      clients,
      seedLines: { datasets: new Set() },
    });
    expect(mine.text).toBe(target);
  });

  it("never touches a line in another file, nor rootdir's own line, nor a child of another root", () => {
    const target = '/r 1.1.1.1(rw)\n/r2/x 1.1.1.1(rw)\n/rx 1.1.1.1(rw)\n';
    const plan = planExports({
      target,
      others: ['/r/y 2.2.2.2(ro)\n'],
      rootdir: '/r',
      add: ['/r/y'],
      keepOnly: new Set(['/r/y']),
      clients,
      seedLines: { datasets: new Set() },
    });
    expect(plan).toEqual({ text: target, added: [], removed: [], updated: [] });
  });

  it('keeps lines byte for byte whatever their encoding (texts are latin1 binary strings)', () => {
    const raw = Buffer.concat([
      Buffer.from('/srv/caf'),
      Buffer.from([0xe9, 0x20]),
      Buffer.from('1.1.1.1(ro) # '),
      Buffer.from('é', 'utf8'),
      Buffer.from('\n/r/st'),
      Buffer.from([0xff]),
      Buffer.from('le *(ro)\n'),
    ]);
    const plan = planExports({
      target: raw.toString('latin1'),
      others: [],
      rootdir: '/r',
      add: ['/r/é'],
      keepOnly: new Set(['/r/é']),
      clients,
      seedLines: { datasets: new Set() },
    });
    const out = Buffer.from(plan.text, 'latin1');
    const firstLine = raw.subarray(0, raw.indexOf(0x0a) + 1);
    expect(out.subarray(0, firstLine.length)).toEqual(firstLine);
    expect(plan.removed).toEqual([`/r/st\ufffdle`]);
    expect(out.toString('latin1')).toContain('/r/\\303\\251 10.0.0.0/8(rw,no_subtree_check)\n');
    // A raw UTF-8 path in the file is read as the path it names.
    expect(exportedPaths(Buffer.from('/r/é *(ro)\n', 'utf8').toString('latin1'))).toEqual(new Set(['/r/é']));
  });
});

describe("undoOnTop: our change taken out over someone else's later edit", () => {
  const before = '# admin\n/r 1.1.1.1(rw)\n';
  const ours = withBlock(before, '/r', new Map([['/r/new', ['1.1.1.1(rw)']]]));

  it('takes our block change out and keeps their edit', () => {
    const now = `${ours}/other 2.2.2.2(ro)\n`;
    expect(undoOnTop(before, ours, now, '/r')).toBe(`${before}/other 2.2.2.2(ro)\n`);
    const nowTop = `# their first line\n${ours}`;
    expect(undoOnTop(before, ours, nowTop, '/r')).toBe(`# their first line\n${before}`);
  });

  it('gives up when they edited our block, or when our change reached outside it', () => {
    const edited = ours.replace('/r/new 1.1.1.1(rw)', '/r/new 3.3.3.3(rw)');
    expect(undoOnTop(before, ours, edited, '/r')).toBeUndefined();
    const seedBefore = '/r 1.1.1.1(rw)\n/r/a 9.9.9.9(ro)\n';
    const seedOurs = '/r 1.1.1.1(rw)\n/r/a 1.1.1.1(rw)\n';
    expect(undoOnTop(seedBefore, seedOurs, `${seedOurs}# theirs\n`, '/r')).toBeUndefined();
  });
});

describe('compare-and-swap writes (cas.ts)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nfs-cas-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('replaces a file that is still what was read, keeping its mode', async () => {
    const f = join(dir, 'exports');
    await writeFile(f, 'a\n');
    await chmod(f, 0o640);
    const seen = await readState(f);
    const r = await replaceIf(f, seen, Buffer.from('b\n'));
    expect(r.ok).toBe(true);
    expect(await readFile(f, 'utf8')).toBe('b\n');
    expect((await stat(f)).mode & 0o777).toBe(0o640);
    if (r.ok) expect(sameState(r.written, await readState(f))).toBe(true);
  });

  it('refuses when the content changed, and when it was replaced by an identical copy', async () => {
    const f = join(dir, 'exports');
    await writeFile(f, 'a\n');
    const seen = await readState(f);
    await appendFile(f, '# admin\n');
    const r = await replaceIf(f, seen, Buffer.from('b\n'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.current.exists && r.current.content.toString()).toBe('a\n# admin\n');
    expect(await readFile(f, 'utf8')).toBe('a\n# admin\n');
    // Same bytes, another inode (an editor that saved by rename): still someone else's write.
    const seen2 = await readState(f);
    await writeFile(join(dir, 'copy'), 'a\n# admin\n');
    await rename(join(dir, 'copy'), f);
    expect((await replaceIf(f, seen2, Buffer.from('c\n'))).ok).toBe(false);
    expect(await readFile(f, 'utf8')).toBe('a\n# admin\n');
    // No temporary file is left behind.
    expect((await execa('ls', ['-A', dir])).stdout.split('\n').sort()).toEqual(['exports']);
  });

  it('creates a missing file only if nobody created it meanwhile, and removes only what it expects', async () => {
    const f = join(dir, 'new.exports');
    const absent = await readState(f);
    await writeFile(f, 'theirs\n');
    expect((await replaceIf(f, absent, Buffer.from('ours\n'))).ok).toBe(false);
    expect(await readFile(f, 'utf8')).toBe('theirs\n');
    await unlink(f);
    const r = await replaceIf(f, absent, Buffer.from('ours\n'));
    expect(r.ok).toBe(true);
    const seen = await readState(f);
    await appendFile(f, 'more\n');
    expect((await replaceIf(f, seen, undefined)).ok).toBe(false);
    expect(await readFile(f, 'utf8')).toBe('ours\nmore\n');
    expect((await replaceIf(f, await readState(f), undefined)).ok).toBe(true);
    expect((await readState(f)).exists).toBe(false);
  });
});

describe('the plugin writing an exports file other people edit', () => {
  let dir: string;
  let exportsFile: string;
  let logs: LogRecord[];
  const ROOT = '/r';
  const base = '# admin\n/r 127.0.0.0/8(rw,no_subtree_check) \\\n    127.0.0.2(ro)\n/srv/x 1.1.1.1(ro) # keep\n';

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nfs-plugin-'));
    exportsFile = join(dir, 'exports');
    await writeFile(exportsFile, base);
    logs = [];
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * A stand-in for exportfs: on the first `-r` it appends `edit` (if any) to the exports file,
   * as an administrator would while exportfs runs; it rejects a file holding "bogus_option".
   */
  async function fakeExportfs(edit?: string): Promise<string> {
    const script = join(dir, 'exportfs');
    if (edit !== undefined) await writeFile(join(dir, 'edit'), edit);
    await writeFile(
      script,
      [
        '#!/bin/sh',
        `d='${dir}'`,
        '[ "$1" = "-r" ] || exit 0',
        'if [ -e "$d/edit" ] && [ ! -e "$d/edited" ]; then : > "$d/edited"; cat "$d/edit" >> "$d/exports"; fi',
        'if grep -q bogus_option "$d/exports"; then echo "exportfs: bogus_option: unknown" >&2; exit 1; fi',
        'exit 0',
        '',
      ].join('\n'),
    );
    await chmod(script, 0o755);
    return script;
  }

  async function apply(options: Record<string, unknown>) {
    const hooks = createHooks();
    const log = createLogger([(r) => logs.push(r)]);
    const opts = plugin.options!.parse({ mode: 'exports-file', exportsFile, dropInFile: join(dir, 'exports.d', 'z.exports'), ...options });
    await plugin.apply(hooks, { options: opts, root: { rootfs: 'p', rootdir: ROOT }, log, dryRun: false, stateDir: join(dir, 'state') });
    const root: RootContext = withRuns({ rootfs: 'p', rootdir: ROOT, log, dryRun: false, stateDir: join(dir, 'state') }, hooks);
    const survey = (live: string[], other: string[] = []): Survey => ({
      directories: new Set(),
      filesystems: new Map<string, { mountpoint: string; mounted: boolean }>([
        ...live.map((n): [string, { mountpoint: string; mounted: boolean }] => [n, { mountpoint: `${ROOT}/${n}`, mounted: true }]),
        ...other.map((n): [string, { mountpoint: string; mounted: boolean }] => [n, { mountpoint: `${ROOT}/${n}`, mounted: false }]),
      ]),
      leftovers: new Set(),
      ignored: new Set(),
    });
    return { sync: (live: string[], other?: string[]) => hooks.sync.promise(root, survey(live, other)) };
  }

  it('an edit made between our read and our write is merged, not lost', async () => {
    // The plugin reads the target, then every *.exports file of the drop-in directory: one of
    // them is a FIFO, so the plugin waits there, between its read and its write, until we have
    // edited the target.
    const dropDir = join(dir, 'exports.d');
    await execa('mkdir', ['-p', dropDir]);
    const fifo = join(dropDir, 'a.exports');
    await execa('mkfifo', [fifo]);
    const { sync } = await apply({ exportfsCommand: await fakeExportfs(), removeStale: true });
    const running = sync(['new']);
    const writer = await open(fifo, 'w'); // returns once the plugin has opened it for reading
    await appendFile(exportsFile, '/srv/admin 2.2.2.2(ro)\n');
    await unlink(fifo); // the next round reads no FIFO
    await writer.close();
    await running;
    const text = await readFile(exportsFile, 'utf8');
    expect(text.startsWith(`${base}/srv/admin 2.2.2.2(ro)\n# BEGIN zfs-dynamic-creator /r\n`)).toBe(true);
    expect(text).toContain('\n/r/new 127.0.0.0/8(rw,no_subtree_check) 127.0.0.2(ro)\n');
    expect(logs.map((l) => l.message)).toContain(
      `${exportsFile} was changed by someone else while we were writing it; planning again on top of their version`,
    );
    // The backup is the version the write was finally made on.
    expect(await readFile(`${exportsFile}.zfs-dynamic-creator.bak`, 'utf8')).toBe(`${base}/srv/admin 2.2.2.2(ro)\n`);
  });

  it('an edit made while exportfs -r runs is not overwritten when exportfs rejects our change', async () => {
    const { sync } = await apply({
      exportfsCommand: await fakeExportfs('/srv/admin 2.2.2.2(ro)\n'),
      clients: '127.0.0.1(rw,bogus_option)',
    });
    await expect(sync(['new'])).rejects.toThrow(
      /exportfs -r rejected the new .*bogus_option.*; our change was taken out again, keeping the edit someone else made meanwhile/,
    );
    expect(await readFile(exportsFile, 'utf8')).toBe(`${base}/srv/admin 2.2.2.2(ro)\n`);
    expect(await readFile(`${exportsFile}.zfs-dynamic-creator.bak`, 'utf8')).toBe(base);
  });

  it('without an edit, a rejected change is rolled back to the previous version', async () => {
    const { sync } = await apply({ exportfsCommand: await fakeExportfs(), clients: '127.0.0.1(rw,bogus_option)' });
    await expect(sync(['new'])).rejects.toThrow(/rejected the new .*; the previous version was restored$/);
    expect(await readFile(exportsFile, 'utf8')).toBe(base);
  });

  it('a rejected change outside our block, then an edit: the file is left as it is, with a message naming the backup', async () => {
    await appendFile(exportsFile, '/r/seeded 9.9.9.9(ro)\n');
    const before = await readFile(exportsFile, 'utf8');
    const { sync } = await apply({
      exportfsCommand: await fakeExportfs('/srv/admin 2.2.2.2(ro)\n'),
      clients: '127.0.0.1(rw,bogus_option)',
    });
    await expect(sync(['seeded'])).rejects.toThrow(
      new RegExp(
        `was changed by someone else after our write, so it was left as it is, not restored \\(the version before our change is in ${exportsFile}\\.zfs-dynamic-creator\\.bak\\): check it and run exportfs -r$`,
      ),
    );
    const after = await readFile(exportsFile, 'utf8');
    expect(after).toBe(`${base}/r/seeded 127.0.0.1(rw,bogus_option)\n/srv/admin 2.2.2.2(ro)\n`);
    expect(await readFile(`${exportsFile}.zfs-dynamic-creator.bak`, 'utf8')).toBe(before);
  });

  it("removeStale drops the original script's line for a child without a dataset, keeps one for a dataset that is not mounted", async () => {
    await appendFile(exportsFile, '/r/gone 127.0.0.0/8(rw)\n/r/unmounted 127.0.0.0/8(rw)\n');
    const { sync } = await apply({ exportfsCommand: await fakeExportfs(), removeStale: true });
    await sync(['new'], ['unmounted']);
    const text = await readFile(exportsFile, 'utf8');
    expect(text.startsWith(`${base}/r/unmounted 127.0.0.0/8(rw)\n# BEGIN zfs-dynamic-creator /r\n`)).toBe(true);
    expect(text).not.toContain('/r/gone');
    expect(logs.map((l) => l.message)).toContain(`remove the stale export of "/r/gone" from ${exportsFile}`);
  });
});
