// relaychat client SDK: one module for the web page, the tests and the Node load generator.
// Browser: `new ChatClient({ url, token })`. Node 20: pass `WebSocket` from 'ws'.
export {
  ChatClient,
  CloseCodes,
  type ChatClientEvents,
  type ChatClientOptions,
  type CommandOptions,
  type ConnectedInfo,
  type ConnectionState,
  type DisconnectedInfo,
  type GapInfo,
  type PresenceChange,
  type SendOptions,
  type StateChange,
  type TokenGetter,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client';
export {
  ChatError,
  isChatError,
  type ChatErrorCode,
  type ClientErrorCode,
  type ProtocolErrorCode,
} from './errors';
export { backoffDelay, type BackoffOptions } from './backoff';
export { randomKey } from './ids';
export { SUBPROTOCOLS, type Encoding } from './codec';
export type * from './protocol';
