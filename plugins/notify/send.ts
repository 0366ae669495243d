/** One try at telling one receiver: a command (JSON on stdin) or a URL (JSON POSTed), within a timeout. */
import { run } from '../../src/index.js';

/** Where a notification goes. */
export type Destination = { readonly command: readonly string[] } | { readonly url: string };

/** What is told: plain data, nothing a receiver must parse out of a sentence. */
export interface Notification {
  /** The outcome's kind or the run event, for the log. */
  readonly what: string;
  /** The directory's name in its root, for the log. */
  readonly name: string;
  /** The JSON document. */
  readonly body: Readonly<Record<string, unknown>>;
  /** The command's ZDC_* variables. */
  readonly env: Readonly<Record<string, string>>;
}

export const label = (to: Destination): string => ('command' in to ? (to.command[0] ?? '') : to.url);

export const sameDestination = (a: Destination, b: Destination): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Sends `n` to `to` once; throws when the receiver fails or does not answer within `timeoutMs`. */
export async function sendOnce(to: Destination, n: Notification, timeoutMs: number): Promise<void> {
  const body = JSON.stringify(n.body);
  if ('command' in to) {
    const [program = '', ...args] = to.command;
    await run(program, args, { input: `${body}\n`, timeoutMs, env: { ...n.env } });
    return;
  }
  const response = await fetch(to.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  // The answer's body is not wanted; read it so the connection is let go.
  await response.arrayBuffer().catch(() => undefined);
  if (!response.ok) throw new Error(`${to.url} answered ${response.status} ${response.statusText}`);
}
