// The catalogue of protocol error codes and close codes, one definition for the gateway, the SDK and the page
// (docs/PROTOCOL.md, "Error codes" and "Close codes", lists the same).

/**
 * Every error code a gateway sends in `{ok: false, error: {code}}`. `retryable`: sending the same command again
 * may succeed. `violation`: the frame broke the protocol; MAX_VIOLATIONS of them within a minute close the
 * connection with 1008. `status`: the HTTP status the server API answers the code with.
 */
export const ERROR_CODES = {
  bad_request: { retryable: false, violation: true, status: 400 },
  unauthorized: { retryable: false, violation: false, status: 401 },
  forbidden: { retryable: false, violation: false, status: 403 },
  not_member: { retryable: false, violation: false, status: 409 },
  rate_limited: { retryable: true, violation: false, status: 429 },
  too_large: { retryable: false, violation: true, status: 413 },
  too_many_rooms: { retryable: false, violation: false, status: 409 },
  unknown_type: { retryable: false, violation: true, status: 400 },
  unavailable: { retryable: true, violation: false, status: 503 },
  rejected: { retryable: false, violation: false, status: 422 },
  internal: { retryable: true, violation: false, status: 500 },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

/** A failure with a protocol error code; anything else thrown by a handler is answered as `internal`. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** WebSocket close codes: 4000-4999 are relaychat's; 1006 is never sent (it is reserved for "no close frame"). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  internal: 1011,
  tokenExpired: 4001,
  kicked: 4003,
  tokenRevoked: 4004,
  tooManyConnections: 4029,
  /** The send buffer passed MAX_BUFFERED_BYTES: the client does not read fast enough (or at all). */
  slowConsumer: 4008,
} as const;

export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];

/** The metric labels of close codes (gateway_connections_closed_total). */
export const CLOSE_BUCKETS = [
  'normal',
  'going_away',
  'policy',
  'expired',
  'kicked',
  'revoked',
  'slow',
  'too_many',
  'error',
  'other',
] as const;
export type CloseBucket = (typeof CLOSE_BUCKETS)[number];

/** Close codes grouped into a fixed set of metric labels, so a client cannot create series with its own codes. */
export function closeBucket(code: number): CloseBucket {
  switch (code) {
    case CLOSE.normal:
    case 1005: // no status in the close frame
      return 'normal';
    case CLOSE.goingAway:
      return 'going_away';
    case CLOSE.policy:
      return 'policy';
    case CLOSE.tokenExpired:
      return 'expired';
    case CLOSE.kicked:
      return 'kicked';
    case CLOSE.tokenRevoked:
      return 'revoked';
    case CLOSE.tooManyConnections:
      return 'too_many';
    case CLOSE.slowConsumer:
      return 'slow';
    case 1002:
    case 1003:
    case 1006:
    case 1007:
    case 1009:
    case CLOSE.internal:
      return 'error';
    default:
      return 'other';
  }
}
