// How a run's result becomes the process exit status.

import type { RunResult } from "../vmm/loop.js";

/** Bad arguments, unreadable or invalid image, backend unavailable. */
export const STATUS_USAGE = 2;
/** Triple fault, VM-entry failure, internal error, a handler error (strict mode), debug trap. */
export const STATUS_GUEST_CRASH = 3;
/** --timeout, --max-exits. */
export const STATUS_LIMIT = 124;
/** Stopped by the user (Ctrl-C, or Ctrl-A x on a terminal). */
export const STATUS_INTERRUPTED = 130;

export function exitStatus(r: RunResult): number {
  switch (r.reason) {
    case "debug-exit":
      // isa-debug-exit codes are (value << 1) | 1; a process status holds 8 bits
      return (r.exitCode ?? 1) & 0xff;
    case "hlt":
    case "poweroff":
    case "reset":
      return 0;
    case "timeout":
    case "max-exits":
    case "max-instructions":
      return STATUS_LIMIT;
    case "stopped":
      return STATUS_INTERRUPTED;
    default:
      return STATUS_GUEST_CRASH;
  }
}

/** Runs that end with a register dump on stderr. */
export function isCrash(r: RunResult): boolean {
  return exitStatus(r) === STATUS_GUEST_CRASH;
}
