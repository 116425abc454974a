import { randomBytes } from 'node:crypto';

/** Random bytes drawn in blocks: one randomBytes call per 1,024 epochs rather than one per read. */
let pool = Buffer.alloc(0);
let at = 0;

/** A fresh epoch: names one incarnation of a stream's history. */
export function newEpoch(): string {
  if (at + 4 > pool.length) {
    pool = randomBytes(4096);
    at = 0;
  }
  at += 4;
  return pool.toString('hex', at - 4, at);
}
