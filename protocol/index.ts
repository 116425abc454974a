// The wire protocol v1, one module for the gateway, the SDK and the page (docs/PROTOCOL.md describes it):
// commands and their parser, replies and events with their validator, the error and close code catalogue, the
// validation rules and limits, and the frame builders. Pure TypeScript with no Node or DOM APIs.
export * from './commands';
export * from './encodings';
export * from './errors';
export type * from './events';
export * from './frames';
export type * from './replies';
export * from './rules';
export { isWellFormed } from './unicode';
export * from './validate';
