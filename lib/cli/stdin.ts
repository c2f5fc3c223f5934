// Terminal input to COM1: raw mode so keys reach the guest as typed (Ctrl-C included), with
// QEMU's escape Ctrl-A x to stop the machine. Only when stdin is a TTY.

import type { Uart16550 } from "../devices/uart16550.js";

const CTRL_A = 0x01;

export interface StdinBridge {
  /** COM1 has room again: resume reading */
  resume(): void;
  close(): void;
}

export function bridgeStdin(
  stdin: NodeJS.ReadStream,
  uart: () => Uart16550 | undefined,
  stop: () => void,
): StdinBridge {
  if (!stdin.isTTY) return { resume() {}, close() {} };
  stdin.setRawMode(true);
  let escaping = false;
  let backlog: number[] = [];
  const push = () => {
    const u = uart();
    if (!u || backlog.length === 0) return;
    const n = u.receive(backlog);
    backlog = backlog.slice(n);
    if (backlog.length) stdin.pause();
    else stdin.resume();
  };
  const onData = (chunk: Buffer) => {
    for (const b of chunk) {
      if (escaping) {
        escaping = false;
        if (b === 0x78 /* x */) {
          stop();
          return;
        }
        if (b !== CTRL_A) backlog.push(CTRL_A);
      } else if (b === CTRL_A) {
        escaping = true;
        continue;
      }
      backlog.push(b);
    }
    push();
  };
  stdin.on("data", onData);
  stdin.resume();
  return {
    resume: push,
    close() {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
    },
  };
}
