// Well-formed UTF-16: no lone surrogate. A lone surrogate becomes U+FFFD when encoded as UTF-8, so two different
// ids would collapse onto the same Redis keys; ids, room names and DM targets must be well formed.
// (String.prototype.isWellFormed is Node 20+ but not in the ES2022 typings this project compiles against.)
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}
