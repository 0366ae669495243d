/**
 * The exports(5) file format, as nfs-utils' exportfs reads it (support/nfs/xio.c,
 * exports.c): whitespace separates tokens; a backslash at the end of a line
 * continues it; `"` toggles quoting; `\ooo` (three octal digits) inside a token
 * is the byte ooo; a token starting with `#` starts a comment. The first token
 * of a line is the path, the others are clients: `host(options)`.
 *
 * Everything here is pure: text in, text out. The plugin does the I/O.
 *
 * Texts are "binary strings": the file's bytes decoded as latin1, one character per
 * byte, so that writing them back (as latin1) gives every line we did not change
 * byte for byte, whatever its encoding. Paths come out as ordinary (UTF-8) strings.
 */

/** Bytes written as themselves in a path; every other byte becomes `\ooo`. */
const SAFE_BYTE = /^[A-Za-z0-9/_.,:+=~-]$/;

/** A path in exportfs's escaped form: never splits into tokens, never starts a comment. */
export function escapePath(path: string | Buffer): string {
  const bytes = typeof path === 'string' ? Buffer.from(path, 'utf8') : path;
  let out = '';
  for (const byte of bytes) {
    const c = String.fromCharCode(byte);
    out += byte < 0x80 && SAFE_BYTE.test(c) ? c : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/**
 * The bytes a token stands for, as exportfs reads it: quotes removed, `\ooo` decoded.
 * The token is a binary string (one character per byte, as read with latin1); a
 * character above U+00FF, which no such string holds, stands for its UTF-8 bytes.
 */
export function unescapeBytes(token: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    const c = token[i]!;
    if (c === '"') continue;
    const octal = token.slice(i + 1, i + 4);
    if (c === '\\' && /^[0-7]{3}$/.test(octal) && parseInt(octal, 8) < 256) {
      bytes.push(parseInt(octal, 8));
      i += 3;
      continue;
    }
    const code = c.charCodeAt(0);
    if (code <= 0xff) bytes.push(code);
    else for (const b of Buffer.from(c, 'utf8')) bytes.push(b);
  }
  return Buffer.from(bytes);
}

/** The path a token stands for, as a string (non-UTF-8 bytes become U+FFFD). */
export function unescapePath(token: string): string {
  return unescapeBytes(token).toString('utf8');
}

/** A path without trailing slashes, for comparing. */
export function normalizePath(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

/** One logical line of an exports file (physical lines joined by trailing backslashes). */
export interface Entry {
  /** Index of its first physical line. */
  readonly first: number;
  /** Index of its last physical line. */
  readonly last: number;
  /** The path, unescaped; undefined for a comment or blank line. */
  readonly path?: string;
  /** The path token as written. */
  readonly pathToken?: string;
  /** The client tokens as written (`host(options)`), comments dropped. */
  readonly clients: readonly string[];
}

/** Splits a logical line into tokens the way exportfs does (quotes keep spaces; `#` starts a comment). */
export function tokenize(logical: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < logical.length) {
    while (i < logical.length && /\s/.test(logical[i]!)) i++;
    if (i >= logical.length || logical[i] === '#') break;
    let token = '';
    let quoted = false;
    while (i < logical.length && (quoted || !/\s/.test(logical[i]!))) {
      if (logical[i] === '"') quoted = !quoted;
      token += logical[i];
      i++;
    }
    tokens.push(token);
  }
  return tokens;
}

/** Splits text into physical lines (the last, empty piece after a final newline dropped). */
export function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/** Parses exports text into logical entries, keeping where each came from. */
export function parseExports(text: string): Entry[] {
  const lines = splitLines(text);
  const entries: Entry[] = [];
  for (let i = 0; i < lines.length; i++) {
    const first = i;
    let logical = lines[i]!;
    // A backslash at the very end continues the line (xgetc turns "\\\n" and the indent after into a space).
    while (logical.endsWith('\\') && !logical.trimStart().startsWith('#') && i + 1 < lines.length) {
      logical = `${logical.slice(0, -1)} ${lines[++i]!.replace(/^[ \t]+/, '')}`;
    }
    const tokens = tokenize(logical);
    const [pathToken, ...clients] = tokens;
    entries.push(
      pathToken === undefined || pathToken.startsWith('-')
        ? { first, last: i, clients: [] }
        : { first, last: i, pathToken, path: unescapePath(pathToken), clients },
    );
  }
  return entries;
}

/** The client tokens of `dir`'s own line(s), or undefined when it has none. */
export function clientsOf(entries: readonly Entry[], dir: string): string[] | undefined {
  const want = normalizePath(dir);
  const found = entries.filter((e) => e.path !== undefined && normalizePath(e.path) === want);
  if (found.length === 0) return undefined;
  return found.flatMap((e) => e.clients);
}

/**
 * Clients inherited from the root's line, fit for a child filesystem: an
 * `fsid=` names one filesystem and must not be copied to another.
 */
export function inheritableClients(clients: readonly string[]): string[] {
  return clients.map((client) => {
    const open = client.indexOf('(');
    if (open < 0 || !client.endsWith(')')) return client;
    const options = client
      .slice(open + 1, -1)
      .split(',')
      .filter((o) => o !== '' && !/^fsid=/.test(o));
    return `${client.slice(0, open)}(${options.join(',')})`;
  });
}

/** A client as configured: host or network, then (options), no spaces, quotes, comments or escapes. */
export const CLIENT_TOKEN = /^[^\s()"'#\\]+\([^\s()"'#\\]*\)$/;

/** Splits and checks a configured clients string; returns the problem, or the tokens. */
export function parseClients(text: string): { clients: string[] } | { problem: string } {
  const clients = text.split(/[ \t]+/).filter(Boolean);
  if (clients.length === 0) return { problem: 'no clients given' };
  const bad = clients.find((c) => !CLIENT_TOKEN.test(c));
  if (bad !== undefined) return { problem: `${JSON.stringify(bad)} is not host(options) without spaces, quotes, '#' or backslashes` };
  return { clients };
}

/** The comment lines that mark the block of lines this tool owns for one root. */
export function blockMarkers(rootdir: string): { begin: string; end: string } {
  const id = escapePath(normalizePath(rootdir));
  return { begin: `# BEGIN zfs-dynamic-creator ${id}`, end: `# END zfs-dynamic-creator ${id}` };
}

export interface Owned {
  /** Paths (unescaped) in our block, with their client tokens, in file order. */
  readonly lines: Map<string, string[]>;
  /** Physical line indexes of the block, markers included; undefined when there is no block. */
  readonly range?: { readonly begin: number; readonly end: number };
}

/** Finds the block this tool owns for `rootdir`. */
export function ownedBlock(text: string, rootdir: string): Owned {
  const lines = splitLines(text);
  const { begin, end } = blockMarkers(rootdir);
  const b = lines.findIndex((l) => l.trimEnd() === begin);
  if (b < 0) return { lines: new Map() };
  let e = lines.findIndex((l, i) => i > b && l.trimEnd() === end);
  if (e < 0) e = lines.length; // an unterminated block runs to the end of the file
  const owned = new Map<string, string[]>();
  for (const entry of parseExports(lines.slice(b + 1, e).join('\n'))) {
    if (entry.path !== undefined) owned.set(normalizePath(entry.path), [...entry.clients]);
  }
  return { lines: owned, range: { begin: b, end: Math.min(e, lines.length - 1) } };
}

/** One export line: escaped path, then the clients. */
export function renderLine(path: string, clients: readonly string[]): string {
  return `${escapePath(path)} ${clients.join(' ')}`;
}

/**
 * The text with our block for `rootdir` holding exactly `exports` (path -> clients),
 * every other line kept byte for byte. An empty map removes the block.
 */
export function withBlock(text: string, rootdir: string, exports: ReadonlyMap<string, readonly string[]>): string {
  const lines = splitLines(text);
  const { range } = ownedBlock(text, rootdir);
  const { begin, end } = blockMarkers(rootdir);
  const block =
    exports.size === 0
      ? []
      : [
          begin,
          '# Managed by zfs-dynamic-creator (nfs-exports plugin): lines in this block are rewritten.',
          ...[...exports].map(([p, c]) => renderLine(p, c)),
          end,
        ];
  let out: string[];
  if (range) {
    out = [...lines.slice(0, range.begin), ...block, ...lines.slice(range.end + 1)];
  } else {
    // A file whose last line continues (ends in a backslash) must not swallow our first line.
    const tail = lines.at(-1);
    const spacer = tail !== undefined && tail.endsWith('\\') ? [''] : [];
    out = [...lines, ...spacer, ...block];
  }
  const hadNewline = text.length === 0 || text.endsWith('\n');
  return out.length === 0 ? '' : `${out.join('\n')}${hadNewline || range || block.length > 0 ? '\n' : ''}`;
}

/** Paths (normalized, unescaped) exported by any line of `text`. */
export function exportedPaths(text: string): Set<string> {
  return new Set(parseExports(text).flatMap((e) => (e.path === undefined ? [] : [normalizePath(e.path)])));
}

/** Physical line ranges of every block this tool marked, for any root. */
export function markedRanges(text: string): { begin: number; end: number }[] {
  const lines = splitLines(text);
  const ranges: { begin: number; end: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^# BEGIN zfs-dynamic-creator (\S+)$/.exec(lines[i]!.trimEnd());
    if (!m) continue;
    const end = lines.findIndex((l, j) => j > i && l.trimEnd() === `# END zfs-dynamic-creator ${m[1]}`);
    ranges.push({ begin: i, end: end < 0 ? lines.length - 1 : end });
    i = end < 0 ? lines.length : end;
  }
  return ranges;
}

/** Whether `path` (normalized) is a direct child of `rootdir`. */
export function isChildOf(path: string, rootdir: string): boolean {
  const root = normalizePath(rootdir);
  const prefix = root === '/' ? '/' : `${root}/`;
  return path.startsWith(prefix) && path.length > prefix.length && !path.slice(prefix.length).includes('/');
}

/** Same client tokens in the same order. */
function sameTokens(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

export interface Plan {
  /** The new text (the input text itself, unchanged, when nothing is to change). */
  readonly text: string;
  /** Paths given a new line in our block. */
  readonly added: string[];
  /** Paths whose line went: ours, and in seed mode the seed's stale child lines. */
  readonly removed: string[];
  /** Seed mode: paths whose existing line outside our block got the root's clients, in place. */
  readonly updated: string[];
}

/**
 * The new text of the file we write: our block for `rootdir` gets `add` (each
 * with `clients()`, unless some line anywhere already exports it); with
 * `keepOnly`, lines of our block for other paths go. Lines we do not own never change.
 *
 * With `seedLines` (exports-file mode, the original script's rule: every line under
 * rootdir is the tool's, marked or not), lines of the target outside our block count too:
 * a path of `add` that has such a line gets that line updated in place to `clients()`
 * (not a second line), and with `keepOnly`, such a line for a direct child of rootdir
 * that is neither in `keepOnly` nor in `seedLines.datasets` is removed. Every other line
 * (comments, continuations, other paths, rootdir's own line, deeper paths) stays byte for byte.
 */
export function planExports(input: {
  readonly target: string;
  readonly others: readonly string[];
  readonly rootdir: string;
  readonly add: readonly string[];
  readonly keepOnly?: ReadonlySet<string>;
  readonly clients: () => readonly string[];
  /** Seed-compatible mode; `datasets`: paths under rootdir that have a dataset (in any state). */
  readonly seedLines?: { readonly datasets: ReadonlySet<string> };
}): Plan {
  const owned = ownedBlock(input.target, input.rootdir);
  const range = owned.range;
  const outside = parseExports(input.target).filter(
    (e): e is Entry & { path: string; pathToken: string } =>
      e.path !== undefined && e.pathToken !== undefined && (!range || e.last < range.begin || e.first > range.end),
  );
  // The original script's lines: outside every marked block (another root's block is that root's).
  const marked = markedRanges(input.target);
  const seedEntries = input.seedLines ? outside.filter((e) => marked.every((r) => e.last < r.begin || e.first > r.end)) : [];
  const next = new Map(owned.lines);
  const removed: string[] = [];
  const updated: string[] = [];
  /** Physical line edits outside our block: first line -> (last line, replacement lines). */
  const edits = new Map<number, { last: number; lines: string[] }>();
  let blockChanged = false;

  if (input.keepOnly) {
    const keep = new Set([...input.keepOnly].map(normalizePath));
    for (const path of [...next.keys()]) {
      if (!keep.has(path)) {
        next.delete(path);
        removed.push(path);
        blockChanged = true;
      }
    }
    if (input.seedLines) {
      for (const d of input.seedLines.datasets) keep.add(normalizePath(d));
      for (const e of seedEntries) {
        const path = normalizePath(e.path);
        if (!isChildOf(path, input.rootdir) || keep.has(path)) continue;
        edits.set(e.first, { last: e.last, lines: [] });
        if (!removed.includes(path)) removed.push(path);
      }
    }
  }

  const elsewhere = new Set(outside.filter((e) => !edits.has(e.first)).map((e) => normalizePath(e.path)));
  for (const other of input.others) for (const p of exportedPaths(other)) elsewhere.add(p);
  const added: string[] = [];
  for (const raw of input.add) {
    const path = normalizePath(raw);
    if (next.has(path)) continue;
    if (input.seedLines) {
      const seed = seedEntries.find((e) => normalizePath(e.path) === path && !edits.has(e.first));
      if (seed) {
        const wanted = input.clients();
        if (!sameTokens(seed.clients, wanted)) {
          const indent = /^[ \t]*/.exec(splitLines(input.target)[seed.first]!)![0];
          edits.set(seed.first, { last: seed.last, lines: [`${indent}${seed.pathToken} ${wanted.join(' ')}`] });
          updated.push(path);
        }
        continue;
      }
    }
    if (elsewhere.has(path)) continue;
    next.set(path, [...input.clients()]);
    added.push(path);
    blockChanged = true;
  }
  if (!blockChanged && edits.size === 0) return { text: input.target, added, removed, updated };

  const text = applyEdits(input.target, edits);
  return { text: blockChanged ? withBlock(text, input.rootdir, next) : text, added, removed, updated };
}

/** `text` with physical line edits made (first line -> last line and the lines that replace them). */
function applyEdits(text: string, edits: ReadonlyMap<number, { readonly last: number; readonly lines: readonly string[] }>): string {
  if (edits.size === 0) return text;
  const lines = splitLines(text);
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const edit = edits.get(i);
    if (edit) {
      out.push(...edit.lines);
      i = edit.last;
    } else {
      out.push(lines[i]!);
    }
  }
  return out.length === 0 ? '' : `${out.join('\n')}${text.endsWith('\n') ? '\n' : ''}`;
}

/**
 * Our change `before` -> `ours` taken out again on top of `now`, a version someone else
 * edited after we wrote `ours`; undefined when that cannot be done safely. It can when
 * our change touched nothing but our block and the other edit left our block as we
 * wrote it: the block goes back to what it was, everything else stays as it is in `now`.
 */
export function undoOnTop(before: string, ours: string, now: string, rootdir: string): string | undefined {
  const mine = ownedBlock(ours, rootdir).lines;
  if (withBlock(before, rootdir, mine) !== ours) return undefined;
  const render = (m: ReadonlyMap<string, readonly string[]>): string => JSON.stringify([...m]);
  const theirs = ownedBlock(now, rootdir);
  if (render(theirs.lines) !== render(mine) || mine.size > 0 !== (theirs.range !== undefined)) return undefined;
  return withBlock(now, rootdir, ownedBlock(before, rootdir).lines);
}
