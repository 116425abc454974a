// POSTs JSON to the application's backend over a keep-alive pool (undici), with a timeout per call, a cap on
// concurrent calls per node and a cap on the response size. Every outcome is a value, never a throw: the
// callers (hooks, webhooks) decide what a failure means.
import { Agent, request } from 'undici';
import { sign, SIGNATURE_HEADER } from './signature';

/** Why a call did not produce a usable answer (the `kind` label of gateway_hook_errors_total). */
export type CallFailure = 'timeout' | 'network' | 'status' | 'bad_response' | 'overload';

export type CallResult =
  | { ok: true; status: number; json: unknown }
  | { ok: false; failure: CallFailure; status?: number; detail: string };

export interface BackendClientOptions {
  /** Calls in flight at once on this node; one more fails at once with `overload`. */
  maxConcurrency: number;
  /** A response body larger than this is `bad_response`. */
  maxResponseBytes: number;
  /** Signs each request body (X-Relaychat-Signature) when set. */
  secret?: string;
  userAgent?: string;
}

export class BackendClient {
  private inflight = 0;
  private readonly agent: Agent;

  constructor(private readonly opts: BackendClientOptions) {
    this.agent = new Agent({
      connections: opts.maxConcurrency,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
      pipelining: 1,
    });
  }

  get inFlight(): number {
    return this.inflight;
  }

  /** POSTs `body` (JSON text); a 2xx answer with a JSON body is ok, anything else a failure. */
  async post(
    url: string,
    body: string,
    timeoutMs: number,
    headers: Record<string, string> = {},
  ): Promise<CallResult> {
    if (this.inflight >= this.opts.maxConcurrency)
      return { ok: false, failure: 'overload', detail: `${this.inflight} calls in flight` };
    this.inflight++;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const h: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': this.opts.userAgent ?? 'relaychat-gateway',
        ...headers,
      };
      if (this.opts.secret) h[SIGNATURE_HEADER] = sign(this.opts.secret, body);
      const res = await request(url, {
        method: 'POST',
        body,
        headers: h,
        signal,
        dispatcher: this.agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.byteLength;
        if (size > this.opts.maxResponseBytes) {
          res.body.destroy();
          return {
            ok: false,
            failure: 'bad_response',
            status: res.statusCode,
            detail: `response over ${this.opts.maxResponseBytes} bytes`,
          };
        }
        chunks.push(chunk);
      }
      if (res.statusCode < 200 || res.statusCode > 299)
        return { ok: false, failure: 'status', status: res.statusCode, detail: `HTTP ${res.statusCode}` };
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return { ok: true, status: res.statusCode, json: undefined };
      try {
        return { ok: true, status: res.statusCode, json: JSON.parse(text) as unknown };
      } catch {
        return { ok: false, failure: 'bad_response', status: res.statusCode, detail: 'body is not JSON' };
      }
    } catch (err) {
      if (signal.aborted)
        return { ok: false, failure: 'timeout', detail: `no answer within ${timeoutMs} ms` };
      const e = err as Error & { code?: string };
      if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT')
        return { ok: false, failure: 'timeout', detail: `no answer within ${timeoutMs} ms` };
      return { ok: false, failure: 'network', detail: e.code ?? e.message };
    } finally {
      this.inflight--;
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}
