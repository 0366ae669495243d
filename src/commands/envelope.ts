/**
 * Every `--json` output is one object in the same envelope: `version` (of the JSON shapes, raised
 * when a field changes meaning or goes away; new fields may appear without it) and `command`,
 * then the command's own fields (status, reconcile, recover, list-plugins, history, doctor).
 */
export const JSON_VERSION = 1;

export type Envelope<C extends string, T extends object> = { readonly version: typeof JSON_VERSION; readonly command: C } & T;

export function envelope<C extends string, T extends object>(command: C, body: T): Envelope<C, T> {
  return { version: JSON_VERSION, command, ...body };
}

/** The envelope as printed: indented JSON and a newline. */
export function jsonText<C extends string, T extends object>(command: C, body: T): string {
  return `${JSON.stringify(envelope(command, body), null, 2)}\n`;
}
