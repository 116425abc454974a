// Room globs from a token's `rooms` claim: `*` any run of characters (also none), `?` exactly one, anything else
// literal. Matched without regular expressions and without backtracking: the pattern is split at its stars into
// segments; the first must match at the start, the last at the end, and each middle one is taken at its leftmost
// position (taking it further right can never help the segments after it). Cost: O(name length x pattern
// length) at worst, so with both capped a match is a few microseconds whatever the pattern (`******x` included).

export class RoomPattern {
  private readonly segments: string[];
  private readonly star: boolean;
  /** Characters the name needs at least (every non-star character). */
  private readonly minLength: number;

  constructor(readonly source: string) {
    const parts = source.split('*');
    this.star = parts.length > 1;
    // Consecutive stars are one star: drop the empty middle segments, keep the first and last as anchors.
    this.segments = this.star
      ? [parts[0]!, ...parts.slice(1, -1).filter((p) => p.length > 0), parts[parts.length - 1]!]
      : parts;
    this.minLength = this.segments.reduce((n, s) => n + s.length, 0);
  }

  matches(name: string): boolean {
    const segs = this.segments;
    if (!this.star) return name.length === segs[0]!.length && segmentAt(name, 0, segs[0]!);
    if (name.length < this.minLength) return false;
    const first = segs[0]!;
    const last = segs[segs.length - 1]!;
    const end = name.length - last.length;
    if (!segmentAt(name, 0, first) || !segmentAt(name, end, last)) return false;
    let pos = first.length;
    for (let i = 1; i < segs.length - 1; i++) {
      const seg = segs[i]!;
      let at = -1;
      for (let start = pos; start + seg.length <= end; start++) {
        if (segmentAt(name, start, seg)) {
          at = start;
          break;
        }
      }
      if (at < 0) return false;
      pos = at + seg.length;
    }
    return true;
  }
}

/** Whether `seg` (literal characters and `?`) matches name at `start`. */
function segmentAt(name: string, start: number, seg: string): boolean {
  for (let i = 0; i < seg.length; i++) {
    const c = seg.charCodeAt(i);
    if (c !== 0x3f /* ? */ && c !== name.charCodeAt(start + i)) return false;
  }
  return true;
}
