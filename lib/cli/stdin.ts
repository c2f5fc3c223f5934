// Standard input to COM1. On a terminal: raw mode so keys reach the guest as typed (Ctrl-C
// included), with QEMU's escape keys (Ctrl-A x stops the machine, Ctrl-A h lists the keys). From a
// pipe or file: the bytes as they come, so a guest's serial console can be scripted
// (`printf 'ls\n' | nodevmm run ...`).
//
// A terminal is read all the time, also while the guest does not drain the UART: the escape keys
// must work whatever the guest does (a hung guest is exactly when Ctrl-A x is wanted). Bytes for the
// guest wait in a bounded backlog; what a terminal sends beyond it is dropped (a paste into a guest
// that does not read), and the first drop is said once. A pipe or file instead pauses while the
// backlog is full, so that scripted input is never lost.

import type { Uart16550 } from "../devices/uart16550.js";

const CTRL_A = 0x01;
/** bytes held for a guest that does not read yet (the UART's FIFO takes 16 at a time) */
export const STDIN_BACKLOG_LIMIT = 64 * 1024;

/** the keys after Ctrl-A, as `Ctrl-A h` prints them */
export const ESCAPE_HELP = [
  "Ctrl-A h    print this help",
  "Ctrl-A x    stop the machine",
  "Ctrl-A s    stop the machine and save it to the --save file (nodevmm resume goes on from there)",
  "Ctrl-A b    send a break to the guest's serial port",
  "Ctrl-A Ctrl-A  send Ctrl-A to the guest",
].join("\n");

/** the line printed when the bridge starts on a terminal */
export const ESCAPE_HINT = "Ctrl-A x stops the machine, Ctrl-A h lists the keys";

export interface StdinBridge {
  /** COM1 has room again: hand it what waits (and resume reading a paused pipe) */
  resume(): void;
  close(): void;
}

export interface StdinBridgeOptions {
  /** where the hint, the help and notices go; default process.stderr */
  notice?: { write(text: string): unknown };
  /** the backlog's bound; default STDIN_BACKLOG_LIMIT */
  backlogLimit?: number;
  /**
   * Ctrl-A s: stop the run so that it is saved (--save); absent when nothing would save it (the
   * key then only says so)
   */
  saveAndStop?: () => void;
}

/** A FIFO of bytes that does not copy the whole backlog each time the UART takes a few. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0; // bytes of #chunks[0] already taken
  length = 0;

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#chunks.push(bytes);
    this.length += bytes.length;
  }

  /** the first chunk's unread bytes, without taking them */
  peek(): Uint8Array | undefined {
    const c = this.#chunks[0];
    return c?.subarray(this.#head);
  }

  drop(n: number): void {
    this.length -= n;
    this.#head += n;
    while (this.#chunks.length > 0 && this.#head >= this.#chunks[0]!.length) {
      this.#head -= this.#chunks[0]!.length;
      this.#chunks.shift();
    }
  }
}

export function bridgeStdin(
  stdin: NodeJS.ReadStream,
  uart: () => Uart16550 | undefined,
  stop: () => void,
  options: StdinBridgeOptions = {},
): StdinBridge {
  const terminal = stdin.isTTY === true;
  const notice = options.notice ?? process.stderr;
  const limit = options.backlogLimit ?? STDIN_BACKLOG_LIMIT;
  const say = (text: string) => notice.write(`nodevmm: ${text.replaceAll("\n", "\nnodevmm: ")}\n`);
  if (terminal) {
    stdin.setRawMode(true);
    say(ESCAPE_HINT);
  }
  let escaping = false;
  let stopped = false;
  let dropped = false;
  let paused = false;
  const backlog = new ByteQueue();

  const push = () => {
    const u = uart();
    if (u) {
      for (let c = backlog.peek(); c !== undefined; c = backlog.peek()) {
        const n = u.receive(c);
        backlog.drop(n);
        if (n < c.length) break;
      }
    }
    if (paused && backlog.length < limit) {
      paused = false;
      stdin.resume();
    }
  };

  /** queues bytes for the guest: a terminal drops what does not fit, a pipe pauses */
  const enqueue = (bytes: Uint8Array) => {
    if (terminal) {
      const room = Math.max(0, limit - backlog.length);
      if (bytes.length > room) {
        if (!dropped) say(`the guest is not reading its serial port; input beyond ${limit} bytes is dropped`);
        dropped = true;
        bytes = bytes.subarray(0, room);
      }
    }
    backlog.push(bytes);
  };

  /** the bytes of a terminal's chunk for the guest, acting on escape sequences as they arrive */
  const scan = (chunk: Uint8Array): Uint8Array | undefined => {
    const out: number[] = [];
    for (const b of chunk) {
      if (!escaping) {
        if (b === CTRL_A) escaping = true;
        else out.push(b);
        continue;
      }
      escaping = false;
      switch (b) {
        case 0x78: // x
          stopped = true;
          stop();
          return undefined;
        case 0x73: // s
          if (options.saveAndStop === undefined) {
            say("Ctrl-A s saves the machine only with --save PATH");
            break;
          }
          stopped = true;
          options.saveAndStop();
          return undefined;
        case 0x68: // h
          say(ESCAPE_HELP);
          break;
        case 0x62: {
          // b: a break goes after what is already queued, so the guest sees them in order
          enqueue(Uint8Array.from(out));
          out.length = 0;
          push();
          if (backlog.length > 0 || uart()?.receiveBreak() !== true)
            say("the guest's serial port cannot take a break now");
          break;
        }
        case CTRL_A:
          out.push(CTRL_A);
          break;
        default:
          // not one of ours: both bytes are the guest's
          out.push(CTRL_A, b);
      }
    }
    return Uint8Array.from(out);
  };

  const onData = (chunk: Buffer | string) => {
    if (stopped) return;
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (terminal) {
      const forGuest = scan(bytes);
      if (forGuest === undefined) return;
      enqueue(forGuest);
    } else {
      // a copy: the stream may reuse its buffer once this handler returns
      enqueue(Uint8Array.from(bytes));
    }
    push();
    if (!terminal && !paused && backlog.length >= limit) {
      paused = true;
      stdin.pause();
    }
  };
  // a read error (stdin closed under us, EIO on a hung-up terminal) only ends the input
  const onError = () => stdin.off("data", onData);
  stdin.on("data", onData);
  stdin.on("error", onError);
  stdin.resume();
  return {
    resume: push,
    close() {
      stdin.off("data", onData);
      stdin.off("error", onError);
      if (terminal) stdin.setRawMode(false);
      stdin.pause();
      // a pipe whose writer stays open must not keep the process alive after the run
      (stdin as { unref?: () => void }).unref?.();
    },
  };
}
