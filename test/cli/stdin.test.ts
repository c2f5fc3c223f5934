// The stdin bridge with a fake terminal and a fake UART: the escape keys work whatever the guest
// does, the backlog is bounded, and a pipe loses nothing.

import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { bridgeStdin, ESCAPE_HINT } from "../../lib/cli/stdin.js";
import type { Uart16550 } from "../../lib/devices/uart16550.js";

const CTRL_A = "\x01";

/** a stdin that looks like a terminal (or a pipe) and remembers its raw mode */
function fakeStdin(tty: boolean) {
  const s = new PassThrough() as PassThrough & {
    isTTY?: boolean;
    raw: boolean;
    setRawMode(on: boolean): void;
  };
  if (tty) s.isTTY = true;
  s.raw = false;
  s.setRawMode = (on: boolean) => {
    s.raw = on;
  };
  return s;
}

/** a UART whose guest reads `reading` bytes at most until drain() */
function fakeUart(fifo = 16) {
  const got: number[] = [];
  let held = 0;
  let breaks = 0;
  const uart = {
    receive(bytes: Uint8Array | readonly number[]) {
      const n = Math.min(fifo - held, bytes.length);
      for (let i = 0; i < n; i++) got.push(bytes[i]!);
      held += n;
      return n;
    },
    receiveBreak() {
      if (held >= fifo) return false;
      breaks++;
      held++;
      return true;
    },
  };
  return {
    uart: uart as unknown as Uart16550,
    got,
    get breaks() {
      return breaks;
    },
    /** the guest read everything in the FIFO */
    drain() {
      held = 0;
    },
  };
}

function fakeNotice() {
  const lines: string[] = [];
  return {
    lines,
    write: (t: string) => lines.push(t),
    get text() {
      return lines.join("");
    },
  };
}

/** lets the stream deliver what was written */
const flush = () => new Promise((r) => setImmediate(r));

function start(tty: boolean, backlogLimit?: number) {
  const stdin = fakeStdin(tty);
  const u = fakeUart();
  const notice = fakeNotice();
  let stops = 0;
  const bridge = bridgeStdin(
    stdin as unknown as NodeJS.ReadStream,
    () => u.uart,
    () => stops++,
    {
      notice,
      ...(backlogLimit !== undefined ? { backlogLimit } : {}),
    },
  );
  return {
    stdin,
    u,
    notice,
    bridge,
    get stops() {
      return stops;
    },
  };
}

describe("stdin bridge on a terminal", () => {
  it("says how to get out once, at the start, and uses raw mode while it runs", () => {
    const t = start(true);
    expect(t.stdin.raw).toBe(true);
    expect(t.notice.text).toContain(ESCAPE_HINT);
    expect(t.notice.text.split("\n").filter(Boolean)).toHaveLength(1);
    t.bridge.close();
    expect(t.stdin.raw).toBe(false);
  });

  it("Ctrl-A x stops the machine although the guest has not read a byte for a long time", async () => {
    const t = start(true);
    // far more than the UART's FIFO, in many chunks, none of it read by the guest
    for (let i = 0; i < 200; i++) t.stdin.write("typing into a hung guest ");
    await flush();
    expect(t.stdin.isPaused()).toBe(false);
    expect(t.u.got).toHaveLength(16);
    expect(t.stops).toBe(0);
    t.stdin.write(`${CTRL_A}x`);
    await flush();
    expect(t.stops).toBe(1);
    t.bridge.close();
  });

  it("finds the escape when Ctrl-A and the key come in separate reads", async () => {
    const t = start(true);
    t.stdin.write(`ab${CTRL_A}`);
    await flush();
    expect(t.stops).toBe(0);
    t.stdin.write("x");
    await flush();
    expect(t.stops).toBe(1);
    expect(Buffer.from(t.u.got).toString()).toBe("ab");
    // nothing after the stop reaches the guest
    t.stdin.write("more");
    await flush();
    expect(Buffer.from(t.u.got).toString()).toBe("ab");
    t.bridge.close();
  });

  it("Ctrl-A h prints the keys and sends the guest nothing", async () => {
    const t = start(true);
    t.stdin.write(`${CTRL_A}h`);
    await flush();
    expect(t.notice.text).toMatch(/Ctrl-A x\s+stop the machine/);
    expect(t.notice.text).toMatch(/Ctrl-A h\s+print this help/);
    expect(t.u.got).toEqual([]);
    expect(t.stops).toBe(0);
    t.bridge.close();
  });

  it("Ctrl-A Ctrl-A sends one Ctrl-A; Ctrl-A before another key sends both", async () => {
    const t = start(true);
    t.stdin.write(`${CTRL_A}${CTRL_A}${CTRL_A}q`);
    await flush();
    expect(t.u.got).toEqual([1, 1, "q".charCodeAt(0)]);
    t.bridge.close();
  });

  it("Ctrl-A b sends a break after the bytes before it", async () => {
    const t = start(true);
    t.stdin.write(`ok${CTRL_A}b`);
    await flush();
    expect(Buffer.from(t.u.got).toString()).toBe("ok");
    expect(t.u.breaks).toBe(1);
    t.bridge.close();
  });

  it("holds at most the backlog's bound for a guest that does not read, and says it drops the rest", async () => {
    const t = start(true, 32);
    const input = Buffer.alloc(100);
    for (let i = 0; i < input.length; i++) input[i] = 0x20 + i;
    t.stdin.write(input);
    await flush();
    t.stdin.write("later");
    await flush();
    expect(t.notice.text).toMatch(/dropped/);
    // the notice is said once
    expect(t.notice.text.match(/dropped/g)).toHaveLength(1);
    for (let i = 0; i < 5; i++) {
      t.u.drain();
      t.bridge.resume();
    }
    // the first 32 bytes reached the guest in order (16 in the FIFO, 16 waiting), the rest of the
    // burst was dropped; "later" found room again
    expect(t.u.got).toEqual([...input.subarray(0, 32), ...Buffer.from("later")]);
    t.stdin.write(`${CTRL_A}x`);
    await flush();
    expect(t.stops).toBe(1);
    t.bridge.close();
  });
});

describe("stdin bridge from a pipe", () => {
  it("passes Ctrl-A through, prints no hint, and loses nothing while the guest is slow", async () => {
    const t = start(false, 32);
    expect(t.stdin.raw).toBe(false);
    expect(t.notice.text).toBe("");
    const input = Buffer.alloc(300);
    for (let i = 0; i < input.length; i++) input[i] = i & 0xff;
    input[10] = 1;
    input[11] = "x".charCodeAt(0);
    t.stdin.write(input);
    await flush();
    expect(t.stops).toBe(0);
    for (let i = 0; i < 100 && t.u.got.length < input.length; i++) {
      t.u.drain();
      t.bridge.resume();
      await flush();
    }
    expect(t.u.got).toEqual([...input]);
    t.bridge.close();
  });

  it("pauses a pipe whose backlog is full and resumes it when the guest reads", async () => {
    const t = start(false, 32);
    t.stdin.write(Buffer.alloc(64, 0x41));
    await flush();
    expect(t.stdin.isPaused()).toBe(true);
    t.u.drain();
    t.bridge.resume();
    t.u.drain();
    t.bridge.resume();
    expect(t.stdin.isPaused()).toBe(false);
    t.bridge.close();
  });
});
