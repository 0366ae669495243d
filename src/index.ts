/** zfs-dynamic-creator as a library: the types and helpers a plugin author needs. */
export * from './core/index.js';
export { App, DEFAULT_PLUGINS, type GlobalOptions } from './app.js';
