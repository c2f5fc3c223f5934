// Standard input to COM1. On a terminal: raw mode so keys reach the guest as typed (Ctrl-C
// included), with QEMU's escape Ctrl-A x to stop the machine. From a pipe or file: the bytes as they
// come, so a guest's serial console can be scripted (`printf 'ls\n' | nodevmm run ...`). Reading
// pauses while the UART's receive FIFO is full and resumes when the guest has drained it.

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
  const terminal = stdin.isTTY === true;
  if (terminal) stdin.setRawMode(true);
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
      if (!terminal) {
        backlog.push(b);
        continue;
      }
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
