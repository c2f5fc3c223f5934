// A minimal gdb for the stub's tests: packets with acks on, replies collected in order, raw bytes
// (Ctrl-C) sent as they are.

import { connect, type Socket } from "node:net";
import { checksum, PacketReader } from "../../lib/gdb/packet.js";

export /** A minimal gdb: sends packets with acks on, collects replies in order. */
class Client {
  readonly #socket: Socket;
  readonly #reader = new PacketReader();
  readonly #replies: string[] = [];
  #waiter: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk) => {
      for (const item of this.#reader.push(chunk)) {
        if (item.kind === "packet") {
          this.#replies.push(Buffer.from(item.payload).toString("latin1"));
          socket.write("+");
        }
      }
      this.#waiter?.();
    });
  }

  static open(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () => resolve(new Client(s)));
      s.once("error", reject);
    });
  }

  send(payload: string): void {
    this.#socket.write(`$${payload}#${checksum(Buffer.from(payload, "latin1"))}`);
  }
  raw(bytes: Uint8Array): void {
    this.#socket.write(bytes);
  }
  async next(): Promise<string> {
    while (this.#replies.length === 0) await new Promise<void>((r) => (this.#waiter = r));
    return this.#replies.shift()!;
  }
  async ask(payload: string): Promise<string> {
    this.send(payload);
    const r = await this.next();
    if (process.env.GDB_TRACE) console.log(payload, "->", r.slice(0, 60));
    return r;
  }
  close(): void {
    this.#socket.destroy();
  }
}
