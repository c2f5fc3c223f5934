// The default exit handlers: what the machine does with each exit kind unless the user overrides
// it through machine.handlers / machine.setExitHandler. Port and MMIO exits go to the buses
// (string I/O is one bus access per element); terminal exits end the run with a reason.

import type { IoExit, MmioExit } from "../types/exits.js";
import type { Bus } from "./bus.js";
import type { ExitContext, ExitHandlerTable, StopRun } from "./loop.js";

/** KVM's -KVM_ENOSYS, what an unanswered hypercall returns in RAX. */
export const HYPERCALL_ENOSYS = -1000n;

export interface HandlerEnv {
  io: Bus;
  mmio: Bus;
  /** set by the I/O handlers when the exit's access found no claim (for traces) */
  lastAccessUnhandled: boolean;
  /**
   * HLT with interrupts enabled: give timers a chance to raise an interrupt. Returns true when the
   * guest should resume (something will wake it), false when the halt is final.
   */
  idle?(ctx: ExitContext): boolean;
}

export function handleIo(env: HandlerEnv, exit: IoExit): void {
  const { port, size, data } = exit;
  const count = Math.max(1, exit.count | 0);
  let unhandled = false;
  for (let i = 0; i < count; i++) {
    const ok =
      exit.direction === "in"
        ? env.io.readInto(port, size, data, i * size)
        : env.io.writeFrom(port, size, data, i * size);
    if (!ok) unhandled = true;
  }
  env.lastAccessUnhandled = unhandled;
}

export function handleMmio(env: HandlerEnv, exit: MmioExit): void {
  const { address, length, data } = exit;
  // Accesses wider than 8 bytes (SSE/AVX moves to MMIO) go out as 8-byte pieces.
  let unhandled = false;
  for (let off = 0; off < length; off += 8) {
    const size = Math.min(8, length - off);
    const ok = exit.write
      ? env.mmio.writeFrom(address + off, size, data, off)
      : env.mmio.readInto(address + off, size, data, off);
    if (!ok) unhandled = true;
  }
  env.lastAccessUnhandled = unhandled;
}

const stop = (reason: StopRun["reason"], message?: string): StopRun =>
  message === undefined ? { reason } : { reason, message };

export function defaultHandlers(env: HandlerEnv): ExitHandlerTable {
  return {
    io: (exit) => handleIo(env, exit),
    mmio: (exit) => handleMmio(env, exit),
    hlt: (_exit, ctx) => (env.idle?.(ctx) ? undefined : stop("hlt")),
    shutdown: () => stop("shutdown", "triple fault (shutdown)"),
    "fail-entry": (exit) =>
      stop("fail-entry", `VM entry failed: hardware entry failure reason 0x${exit.reason.toString(16)}`),
    "internal-error": (exit) =>
      stop(
        "internal-error",
        `internal error (suberror ${exit.suberror})${exit.message ? `: ${exit.message}` : ""}${
          exit.data.length ? ` data=[${exit.data.map((d) => `0x${d.toString(16)}`).join(", ")}]` : ""
        }`,
      ),
    "system-event": (exit) => {
      if (exit.type === 2) return stop("reset", "system event: reset");
      if (exit.type === 1) return stop("poweroff", "system event: shutdown");
      return stop("internal-error", `system event type ${exit.type}`);
    },
    debug: (exit) => stop("debug", `debug exception ${exit.exception} at 0x${exit.pc.toString(16)}`),
    // Interruptions and interrupt windows carry nothing to do: the loop checks limits and resumes.
    intr: () => undefined,
    "irq-window-open": () => undefined,
    hypercall: (exit) => {
      exit.ret = HYPERCALL_ENOSYS;
    },
    cpuid: () => undefined,
    msr: () => undefined,
    unknown: (exit) => stop("internal-error", `unknown exit code ${exit.code}`),
  };
}
