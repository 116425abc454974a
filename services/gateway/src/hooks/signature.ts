// The signature on every webhook delivery (and on hook calls when HOOK_SECRET is set), Stripe-style:
//   X-Relaychat-Signature: t=<unix ms>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
// docs/INTEGRATION.md shows the receiving side.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-relaychat-signature';

export function sign(secret: string, body: string, timestampMs: number = Date.now()): string {
  const mac = createHmac('sha256', secret).update(`${timestampMs}.${body}`).digest('hex');
  return `t=${timestampMs},v1=${mac}`;
}

/**
 * What a receiver does: recompute the HMAC over `t.body` and compare in constant time; refuse a timestamp older
 * than `toleranceMs` (a replayed delivery). Returns false on any malformed header.
 */
export function verify(
  secret: string,
  body: string,
  header: string | undefined,
  toleranceMs = 5 * 60_000,
  now: number = Date.now(),
): boolean {
  const parts = new Map(
    (header ?? '').split(',').map((p) => {
      const i = p.indexOf('=');
      return [p.slice(0, i).trim(), p.slice(i + 1).trim()] as const;
    }),
  );
  const t = Number(parts.get('t'));
  const v1 = parts.get('v1') ?? '';
  if (!Number.isSafeInteger(t) || !/^[0-9a-f]{64}$/.test(v1)) return false;
  if (Math.abs(now - t) > toleranceMs) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1, 'hex'));
}
