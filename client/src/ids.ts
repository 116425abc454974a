/** A random idempotency key (32 hex chars). Uses crypto.getRandomValues, available in Node 20 and in browsers
 * on plain http too (unlike crypto.randomUUID, which needs a secure context). */
export function randomKey(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}
