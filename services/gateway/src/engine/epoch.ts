import { randomBytes } from 'node:crypto';

/** A fresh epoch: names one incarnation of a stream's history. */
export function newEpoch(): string {
  return randomBytes(4).toString('hex');
}
