import { ERROR_CODES, type ErrorCode, type WireError } from '../../protocol';

/** Error codes a gateway sends (docs/PROTOCOL.md, "Error codes"): the shared catalogue's. */
export type ProtocolErrorCode = ErrorCode;

/** Error codes the client raises itself. */
export type ClientErrorCode =
  /** No reply within the command's timeout (the command may still have taken effect; retry a publish with its key). */
  | 'timeout'
  /** Issued while reconnecting and the pending-command queue was full. */
  | 'queue_full'
  /** The client was closed (by `close()`, or for good by the server) before the command completed. */
  | 'closed'
  /** A frame from the server did not match protocol v1 (the shared validator refused it); nothing relied on it. */
  | 'bad_frame';

export type ChatErrorCode = ProtocolErrorCode | ClientErrorCode;

const CLIENT_RETRYABLE: Record<ClientErrorCode, boolean> = {
  timeout: true,
  queue_full: true,
  closed: false,
  bad_frame: false,
};

function retryableCode(code: string): boolean {
  if (Object.prototype.hasOwnProperty.call(ERROR_CODES, code))
    return ERROR_CODES[code as ErrorCode].retryable;
  return CLIENT_RETRYABLE[code as ClientErrorCode] ?? false;
}

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
    this.retryable = opts.retryable ?? retryableCode(code);
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
