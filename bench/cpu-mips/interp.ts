// Runs a benchmark image on the interpreter alone: RAM identity-mapped, the debug port observed at the
// I/O hook without a VM exit (so the timed loop runs undisturbed), port 0xF4 ends the run.

import { performance } from "node:perf_hooks";
import { createBareHooks, Interpreter, Seg, StopReason } from "../../lib/cpu/index.js";
import { DebugStream } from "./debug-stream.js";

const RAM_SIZE = 2 << 20;
const LOAD_ADDRESS = 0x7c00;

export interface InterpRun {
  stream: DebugStream;
  /** why the run ended, when it was not the guest's exit port */
  error?: string;
  retired: number;
}

export function runOnInterpreter(image: Uint8Array, maxInstructions: number): InterpRun {
  const ram = new Uint8Array(RAM_SIZE);
  ram.set(image, LOAD_ADDRESS);
  const cpu = new Interpreter();
  const stream = new DebugStream();
  let exited = false;
  let fault: string | undefined;
  // OUT to the debug port is observed without a VM exit, so the timed loop runs undisturbed; the
  // exit port only sets a flag and the guest's following HLT stops the run.
  const hooks = createBareHooks(ram, {
    portOut(port, _size, value) {
      if (port === 0xe9) stream.push(value & 0xff, performance.now(), cpu.retired);
      else if (port === 0xf4) exited = true;
    },
    portIn: () => 0xffffffff,
    event(vector) {
      fault = `exception ${vector} at rip 0x${cpu.getRip().toString(16)}`;
      return true;
    },
  });
  cpu.hooks = hooks;
  cpu.setSegment(Seg.CS, { selector: 0, base: 0n, limit: 0xffff, ar: 0x9b });
  cpu.setRip(BigInt(LOAD_ADDRESS));
  let error: string | undefined;
  while (!exited) {
    const left = maxInstructions - cpu.retired;
    if (left <= 0) {
      error = `no exit after ${maxInstructions} instructions`;
      break;
    }
    const stop = cpu.run(Math.min(left, 100_000_000));
    if (exited) break;
    if (fault) {
      error = fault;
      break;
    }
    if (stop === StopReason.Halted || stop === StopReason.Shutdown) {
      error = `guest stopped (${stop === StopReason.Halted ? "hlt" : "shutdown"}) at rip 0x${cpu.getRip().toString(16)}`;
      break;
    }
    if (stop === StopReason.Exit) {
      error = `unexpected exit (${hooks.lastExit?.kind}) at rip 0x${cpu.getRip().toString(16)}`;
      break;
    }
  }
  return { stream, error, retired: cpu.retired };
}
