/**
 * The exports(5) file format, as nfs-utils' exportfs reads it (support/nfs/xio.c,
 * exports.c): whitespace separates tokens; a backslash at the end of a line
 * continues it; `"` toggles quoting; `\ooo` (three octal digits) inside a token
 * is the byte ooo; a token starting with `#` starts a comment. The first token
 * of a line is the path, the others are clients: `host(options)`.
 *
 * Everything here is pure: text in, text out. The plugin does the I/O.
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

/** The bytes a token stands for, as exportfs reads it: quotes removed, `\ooo` decoded. */
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
    // Anything else stands for itself (a token holds no raw byte > 0xff: it came from latin1 or utf8 text).
    for (const b of Buffer.from(c, 'utf8')) bytes.push(b);
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
    entries.push(pathToken === undefined || pathToken.startsWith('-') ? { first, last: i, clients: [] } : { first, last: i, pathToken, path: unescapePath(pathToken), clients });
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
      : [begin, '# Managed by zfs-dynamic-creator (nfs-exports plugin): lines in this block are rewritten.', ...[...exports].map(([p, c]) => renderLine(p, c)), end];
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

/**
 * Parses `exportfs -v` output into (path, client) pairs. exportfs prints a path
 * of more than 14 bytes followed by "\n\t\t", a shorter one padded to 14 then "\t",
 * and the path itself unescaped (so it may hold spaces and even newlines).
 */
export function parseExportfsVerbose(output: string): { path: string; client: string }[] {
  const out: { path: string; client: string }[] = [];
  const re = /([^]*?)(?:\n\t\t| *\t)([^\s(]*)\(([^)\n]*)\)\n/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(output)) !== null) {
    let path = m[1]!;
    // A short path is padded to 14 columns; a longer one is never padded.
    if (Buffer.byteLength(path) <= 14) path = path.replace(/ +$/, '');
    out.push({ path, client: m[2]! });
  }
  return out;
}

/**
 * The new text of the file we write: our block for `rootdir` gets `add` (each
 * with `clients()`, unless some line anywhere already exports it); with
 * `keepOnly`, lines of our block for other paths go. Lines we do not own never change.
 */
export function planExports(input: {
  readonly target: string;
  readonly others: readonly string[];
  readonly rootdir: string;
  readonly add: readonly string[];
  readonly keepOnly?: ReadonlySet<string>;
  readonly clients: () => readonly string[];
}): { text: string; added: string[]; removed: string[] } {
  const owned = ownedBlock(input.target, input.rootdir).lines;
  const next = new Map(owned);
  const removed: string[] = [];
  if (input.keepOnly) {
    const keep = new Set([...input.keepOnly].map(normalizePath));
    for (const path of [...next.keys()]) {
      if (!keep.has(path)) {
        next.delete(path);
        removed.push(path);
      }
    }
  }
  const elsewhere = exportedPaths(withBlock(input.target, input.rootdir, new Map()));
  for (const other of input.others) for (const p of exportedPaths(other)) elsewhere.add(p);
  const added: string[] = [];
  for (const raw of input.add) {
    const path = normalizePath(raw);
    if (next.has(path) || elsewhere.has(path)) continue;
    next.set(path, [...input.clients()]);
    added.push(path);
  }
  const text = added.length === 0 && removed.length === 0 ? input.target : withBlock(input.target, input.rootdir, next);
  return { text, added, removed };
}
