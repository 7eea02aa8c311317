/**
 * A TCP fault proxy on loopback, placed between a client and a server to inject network faults:
 * latency (delay), a partition that keeps sockets open but delivers nothing (blackhole), requests that arrive but whose
 * replies are lost (dropReplies), and dropped connections (cut).
 */
import * as net from 'node:net';

export type ProxyMode = 'pass' | 'dropReplies' | 'blackhole' | 'cut';

interface Pending {
  due: number;
  chunk: Buffer;
}

/** One direction of a proxied connection: delivers chunks in order, each no earlier than its due time. */
class Pipe {
  private readonly queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private waitingForDrain = false;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly toServer: boolean,
  ) {
    from.on('data', (chunk: Buffer) => this.receive(chunk));
  }

  private receive(chunk: Buffer): void {
    this.proxy.received(this.toServer);
    if (!this.proxy.passes(this.toServer)) return; // partitioned: the bytes are lost, as on a dead link
    const delay = this.proxy.latency;
    if (delay <= 0 && this.queue.length === 0) {
      this.write(chunk);
      return;
    }
    // A later chunk never overtakes an earlier one, even if the delay was lowered in between.
    const last = this.queue[this.queue.length - 1];
    const due = Math.max(performance.now() + delay, last?.due ?? 0);
    this.queue.push({ due, chunk });
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    const head = this.queue[0];
    if (!head) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.flush();
      },
      Math.max(0, head.due - performance.now()),
    );
  }

  private flush(): void {
    const now = performance.now();
    while (this.queue.length > 0 && (this.queue[0]?.due ?? Infinity) <= now + 1) {
      const item = this.queue.shift();
      // Data still in flight when the link went down is lost too.
      if (item && this.proxy.passes(this.toServer)) this.write(item.chunk);
    }
    this.schedule();
  }

  private write(chunk: Buffer): void {
    if (this.to.destroyed) return;
    if (!this.to.write(chunk) && !this.waitingForDrain) {
      // Backpressure: stop reading until the other side drains.
      this.waitingForDrain = true;
      this.from.pause();
      this.to.once('drain', () => {
        this.waitingForDrain = false;
        this.from.resume();
      });
    }
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

class Connection {
  private readonly pipes: Pipe[];
  private closed = false;

  constructor(
    private readonly proxy: FaultProxy,
    readonly client: net.Socket,
    readonly upstream: net.Socket,
    private readonly onClose: (c: Connection) => void,
  ) {
    this.pipes = [new Pipe(proxy, client, upstream, true), new Pipe(proxy, upstream, client, false)];
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      // Half-close passes through (unless partitioned: then nothing does); errors and close tear down both sides.
      a.on('end', () => {
        if (this.proxy.mode === 'pass') b.end();
      });
      a.on('error', () => this.destroy(false));
      a.on('close', () => this.destroy(false));
    }
  }

  destroy(reset: boolean): void {
    if (this.closed) return;
    this.closed = true;
    for (const pipe of this.pipes) pipe.dispose();
    for (const socket of [this.client, this.upstream]) {
      if (reset && !socket.destroyed && typeof socket.resetAndDestroy === 'function' && socket.readyState === 'open') {
        socket.resetAndDestroy(); // RST, as when a middlebox drops the connection
      } else {
        socket.destroy();
      }
    }
    this.onClose(this);
  }
}

export class FaultProxy {
  readonly host = '127.0.0.1';
  private currentMode: ProxyMode = 'pass';
  private delayMs = 0;
  private readonly open = new Set<Connection>();
  /** Chunks that reached the proxy from clients, toward the server (whether or not they were let through). */
  chunksToServer = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    readonly target: { readonly host: string; readonly port: number },
  ) {}

  /** Listens on a free loopback port and forwards every connection to `target`. */
  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: 0, host: '127.0.0.1' }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('proxy has no port');
    const proxy = new FaultProxy(server, address.port, { host: target.host, port: target.port });
    server.on('connection', (socket) => proxy.accept(socket));
    return proxy;
  }

  /** 'pass' (possibly with latency), 'dropReplies', 'blackhole' or 'cut'. */
  get mode(): ProxyMode {
    return this.currentMode;
  }

  /** Counts a chunk that reached the proxy (tests wait on it to know a request is on its way). */
  received(toServer: boolean): void {
    if (toServer) this.chunksToServer++;
  }

  /** Whether bytes flowing toward the server (or toward the client) get through now. */
  passes(toServer: boolean): boolean {
    return this.currentMode === 'pass' || (this.currentMode === 'dropReplies' && toServer);
  }

  /** Added latency per direction in ms while passing. */
  get latency(): number {
    return this.delayMs;
  }

  /** Client connections currently open through the proxy. */
  get connections(): number {
    return this.open.size;
  }

  /** Normal forwarding, no latency. */
  pass(): void {
    this.currentMode = 'pass';
    this.delayMs = 0;
  }

  /** Forward with `ms` of added latency in each direction. */
  delay(ms: number): void {
    this.currentMode = 'pass';
    this.delayMs = ms;
  }

  /** Requests reach the server, but its replies are discarded: the client cannot tell what was applied. */
  dropReplies(): void {
    this.currentMode = 'dropReplies';
  }

  /**
   * A partition: connections stay open (new ones are accepted too) but no byte goes through; bytes sent meanwhile
   * are discarded. pass() delivers new data again.
   */
  blackhole(): void {
    this.currentMode = 'blackhole';
  }

  /** Resets every open connection now; new ones are accepted and reset at once, until pass() or delay(). */
  cut(): void {
    this.currentMode = 'cut';
    for (const connection of [...this.open]) connection.destroy(true);
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    this.currentMode = 'cut';
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of [...this.open]) connection.destroy(false);
    await closed;
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined); // reported through 'close'; an unhandled 'error' would crash the test run
    if (this.mode === 'cut') {
      if (typeof client.resetAndDestroy === 'function') client.resetAndDestroy();
      else client.destroy();
      return;
    }
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    upstream.on('error', () => undefined);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    this.open.add(new Connection(this, client, upstream, (c) => this.open.delete(c)));
  }
}
