/**
 * The self-contained program (src/sea.ts, built by scripts/sea.mjs): its builtin plugins and its
 * version are in the executable, not on disk. The loader asks here first; in the npm install
 * nothing is registered and the builtins are loaded from dist/plugins/ as always.
 */
export interface Embedded {
  readonly version: string;
  /** Builtin name → its module's default export. */
  readonly plugins: ReadonlyMap<string, unknown>;
  /** Imports a plugin from disk (a SEA's main script has no import() of its own). */
  readonly importModule: (url: string) => Promise<unknown>;
}

let embedded: Embedded | undefined;

export function embed(program: Embedded): void {
  embedded = program;
}

export const embeddedProgram = (): Embedded | undefined => embedded;

/** What --version adds to the version: the runtime the self-contained program carries. */
export const runtimeNote = (): string => (embedded ? ` (self-contained, Node.js ${process.version})` : '');
