// Per-stream sequence tracking on the receiving side. A stream is one publisher's numbering (a generator's
// messages into one room, or one user's DMs); numbers start at 1 and grow by one per message sent. The window
// tolerates reordering: it remembers every number above the first hole until the hole fills.

export class SeqWindow {
  /** Every number below `next` has been seen. */
  private next = 1;
  private above: Set<number> | undefined;

  /** Returns true the first time `seq` is seen and false for a duplicate. */
  see(seq: number): boolean {
    if (seq < this.next) return false;
    if (seq === this.next) {
      this.next += 1;
      if (this.above) {
        while (this.above.delete(this.next)) this.next += 1;
        if (this.above.size === 0) this.above = undefined;
      }
      return true;
    }
    this.above ??= new Set();
    if (this.above.has(seq)) return false;
    this.above.add(seq);
    return true;
  }

  /** How many numbers up to `last` are still missing. */
  missing(last: number): number {
    if (last < this.next) return 0;
    let have = 0;
    if (this.above) for (const s of this.above) if (s <= last) have += 1;
    return last - this.next + 1 - have;
  }
}
