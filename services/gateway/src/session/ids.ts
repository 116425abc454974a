// Message ids.

let idCounter = 0;
const idPrefix = Math.floor(Math.random() * 36 ** 6)
  .toString(36)
  .padStart(6, '0');

/** Unique across nodes with overwhelming probability; short on the wire. */
export function newMessageId(): string {
  return `${idPrefix}${(idCounter++).toString(36)}`;
}
