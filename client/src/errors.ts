import type { WireError } from './protocol';

/** Error codes a gateway sends (docs/PROTOCOL.md, "Error codes"). */
export type ProtocolErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_member'
  | 'rate_limited'
  | 'too_large'
  | 'too_many_rooms'
  | 'unknown_type'
  | 'unavailable'
  | 'internal';

/** Error codes the client raises itself. */
export type ClientErrorCode =
  /** No reply within the command's timeout (the command may still have taken effect; retry a publish with its key). */
  | 'timeout'
  /** Issued while reconnecting and the pending-command queue was full. */
  | 'queue_full'
  /** The client was closed (by `close()`, or for good by the server) before the command completed. */
  | 'closed';

export type ChatErrorCode = ProtocolErrorCode | ClientErrorCode;

const RETRYABLE: Record<ChatErrorCode, boolean> = {
  bad_request: false,
  unauthorized: false,
  forbidden: false,
  not_member: false,
  rate_limited: true,
  too_large: false,
  too_many_rooms: false,
  unknown_type: false,
  unavailable: true,
  internal: true,
  timeout: true,
  queue_full: true,
  closed: false,
};

export class ChatError extends Error {
  override readonly name = 'ChatError';
  /** A protocol error code, a client error code, or (from a newer server) a code this client does not know. */
  readonly code: ChatErrorCode | (string & {});
  /** Whether sending the same command again may succeed. */
  readonly retryable: boolean;
  /** For `rate_limited`: when to try again. */
  readonly retryAfterMs: number | undefined;
  /** The command type that failed, when there is one. */
  readonly command: string | undefined;

  constructor(
    code: ChatErrorCode | (string & {}),
    message: string,
    opts: { retryable?: boolean; retryAfterMs?: number; command?: string } = {},
  ) {
    super(message);
    this.code = code;
    this.retryable = opts.retryable ?? RETRYABLE[code as ChatErrorCode] ?? false;
    this.retryAfterMs = opts.retryAfterMs;
    this.command = opts.command;
  }

  static fromWire(error: WireError, command?: string): ChatError {
    return new ChatError(error.code, error.message, {
      retryable: error.retryable,
      retryAfterMs: error.retryAfterMs,
      command,
    });
  }
}

export function isChatError(err: unknown, code?: ChatErrorCode): err is ChatError {
  return err instanceof ChatError && (code === undefined || err.code === code);
}
