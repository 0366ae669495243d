/** This program's version, from its package.json (two or three levels above this module: src/core, dist/src/core, dist/src/chunks). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedProgram } from './embedded.js';

const here = dirname(fileURLToPath(import.meta.url));

let projectVersion: string | undefined;
/** This program's version (from its package.json). */
export function ownVersion(): string {
  projectVersion ??= embeddedProgram()?.version;
  if (projectVersion === undefined) {
    for (const candidate of [join(here, '..', '..', 'package.json'), join(here, '..', '..', '..', 'package.json')]) {
      if (existsSync(candidate)) {
        projectVersion = String((JSON.parse(readFileSync(candidate, 'utf8')) as { version?: string }).version ?? '0.0.0');
        break;
      }
    }
  }
  return projectVersion ?? '0.0.0';
}
