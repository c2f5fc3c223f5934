// The TCP side: a node:net server that hands one gdb connection at a time to a GdbSession. A
// second client is refused while one is attached (gdb talks to one target at a time). A client
// that goes away without D or k counts as a detach: the guest runs on without breakpoints.

import { createServer, type Server, type Socket } from "node:net";
import { GdbSession } from "./session.js";
import type { GdbTarget, StopEvent } from "./target.js";

export interface GdbListenOptions {
  /** TCP port; 0 picks a free one (the handle says which) */
  port: number;
  /** default 127.0.0.1 */
  host?: string;
  log?(message: string): void;
}

export class GdbServerError extends Error {
  /** Always "GdbServerError" (the class name, for people). */
  override name = "GdbServerError";
}

export class GdbServer {
  readonly #server: Server;
  readonly #target: GdbTarget;
  readonly #log: (message: string) => void;
  #socket: Socket | undefined;
  #session: GdbSession | undefined;
  #connectedWaiters: (() => void)[] = [];
  port = 0;
  host = "127.0.0.1";

  private constructor(target: GdbTarget, log: (message: string) => void) {
    this.#target = target;
    this.#log = log;
    this.#server = createServer((socket) => this.#accept(socket));
  }

  static async listen(target: GdbTarget, opts: GdbListenOptions): Promise<GdbServer> {
    const port = opts.port;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new GdbServerError(`gdb port must be an integer 0-65535, got ${String(port)}`);
    }
    const s = new GdbServer(target, opts.log ?? (() => {}));
    const host = opts.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) =>
        reject(new GdbServerError(`cannot listen for gdb on ${host}:${port}: ${e.message}`));
      s.#server.once("error", onError);
      s.#server.listen(port, host, () => {
        s.#server.off("error", onError);
        resolve();
      });
    });
    const addr = s.#server.address();
    if (addr && typeof addr === "object") {
      s.port = addr.port;
      s.host = addr.address;
    }
    return s;
  }

  /** whether a gdb is connected */
  get connected(): boolean {
    return this.#session !== undefined;
  }

  /** resolves when a gdb connects (at once if one is connected) */
  whenConnected(): Promise<void> {
    if (this.#session) return Promise.resolve();
    return new Promise((resolve) => this.#connectedWaiters.push(resolve));
  }

  /** the target stopped: tell the connected gdb (if it waits for a stop reply) */
  stopped(ev: StopEvent): void {
    this.#session?.stopped(ev);
  }

  #accept(socket: Socket): void {
    if (this.#socket) {
      this.#log("gdb: a second client was refused (one is attached)");
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    this.#socket = socket;
    let ended = false;
    const session = new GdbSession(this.#target, (bytes) => socket.write(bytes), {
      onEnd: () => {
        ended = true;
        socket.end();
      },
      log: this.#log,
    });
    this.#session = session;
    socket.on("data", (chunk) => session.receive(chunk));
    socket.on("error", (e) => this.#log(`gdb: connection error: ${e.message}`));
    socket.on("close", () => {
      session.close();
      if (this.#session === session) {
        this.#session = undefined;
        this.#socket = undefined;
      }
      if (!ended) this.#target.detach();
    });
    for (const w of this.#connectedWaiters.splice(0)) w();
  }

  async close(): Promise<void> {
    this.#socket?.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
