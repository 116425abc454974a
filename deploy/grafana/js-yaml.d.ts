// js-yaml 4 is in node_modules (through eslint) but its types are not; this covers the two calls we make.
// Delete this file once @types/js-yaml is a devDependency.
declare module 'js-yaml' {
  export function load(text: string, options?: { filename?: string }): unknown;
  export function loadAll(text: string, iterator?: null, options?: { filename?: string }): unknown[];
  export function dump(
    value: unknown,
    options?: {
      indent?: number;
      lineWidth?: number;
      noRefs?: boolean;
      sortKeys?: boolean;
      quotingType?: "'" | '"';
    },
  ): string;
}
