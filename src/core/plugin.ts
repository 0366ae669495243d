import type { PluginDefinition } from './types.js';

/** Identity function that gives a plugin definition its types. */
export function definePlugin<O>(definition: PluginDefinition<O>): PluginDefinition<O> {
  return definition;
}
