/** The exports(5) format: parsing, escaping, our block, planning. */
import { describe, expect, it } from 'vitest';
import {
  blockMarkers,
  clientsOf,
  escapePath,
  exportedPaths,
  inheritableClients,
  ownedBlock,
  parseClients,
  parseExportfsVerbose,
  parseExports,
  planExports,
  tokenize,
  unescapeBytes,
  unescapePath,
  withBlock,
} from '../../plugins/nfs-exports/exports.js';

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
    expect(parseExports(out).filter((e) => e.path).map((e) => e.path)).toEqual(['/srv/x', '/r/a']);
  });

  it('keeps blocks of other roots apart', () => {
    let text = withBlock('', '/r1', new Map([['/r1/a', ['*(ro)']]]));
    text = withBlock(text, '/r2', new Map([['/r2/b', ['*(ro)']]]));
    text = withBlock(text, '/r1', new Map([['/r1/a', ['*(ro)']], ['/r1/c', ['*(ro)']]]));
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
    const plan = planExports({ target: '/r/a 1.1.1.1(ro)\n', others: ['/r/b *(ro)\n'], rootdir: '/r', add: ['/r/a', '/r/b', '/r/c'], clients });
    expect(plan.added).toEqual(['/r/c']);
  });

  it('removes only our stale lines', () => {
    const start = withBlock('/r/legacy 1.1.1.1(ro)\n', '/r', new Map([['/r/gone', ['*(ro)']], ['/r/here', ['*(ro)']]]));
    const plan = planExports({ target: start, others: [], rootdir: '/r', add: ['/r/here', '/r/new'], keepOnly: new Set(['/r/here', '/r/new']), clients });
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
