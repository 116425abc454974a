// A TCP proxy in front of a gateway, so a test can decide when a reconnect gets through (hold/release) and
// lose a reply in flight (muteDownstream + cut). Everything behind it is the real gateway.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export class TcpProxy {
  private held: Socket[] = [];
  private readonly pairs = new Set<[Socket, Socket]>();
  private holding = false;
  private muted = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const proxy = new TcpProxy(server, (server.address() as { port: number }).port, targetPort);
    server.on('connection', (sock) => proxy.accept(sock));
    return proxy;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Connections opened from now on wait (the client sees a pending handshake) until release(). */
  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    for (const sock of this.held.splice(0)) this.forward(sock);
  }

  /** Drops every byte the server sends to clients (replies and events are lost) until cut. */
  muteDownstream(): void {
    this.muted = true;
  }

  /** Destroys every proxied connection: the client sees an abnormal close (1006). */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    this.muted = false;
  }

  async close(): Promise<void> {
    this.cut();
    for (const s of this.held.splice(0)) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(sock: Socket): void {
    sock.on('error', () => undefined);
    if (this.holding) this.held.push(sock);
    else this.forward(sock);
  }

  private forward(client: Socket): void {
    const upstream = connect(this.targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => {
      upstream.destroy();
      this.pairs.delete(pair);
    });
    upstream.on('close', () => {
      client.destroy();
      this.pairs.delete(pair);
    });
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!this.muted) client.write(d);
    });
  }
}
