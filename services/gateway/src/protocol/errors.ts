// The catalogue of protocol error codes and close codes (docs/PROTOCOL.md lists the same).

export const ERROR_CODES = {
  bad_request: { retryable: false, violation: true },
  unauthorized: { retryable: false, violation: false },
  forbidden: { retryable: false, violation: false },
  not_member: { retryable: false, violation: false },
  rate_limited: { retryable: true, violation: false },
  too_large: { retryable: false, violation: true },
  too_many_rooms: { retryable: false, violation: false },
  unknown_type: { retryable: false, violation: true },
  unavailable: { retryable: true, violation: false },
  rejected: { retryable: false, violation: false },
  internal: { retryable: true, violation: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

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
