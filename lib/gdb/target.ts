// What the protocol session needs of the thing it debugs. lib/gdb/machine-target.ts implements it
// over a Machine; tests implement it with fakes. Addresses are guest-linear. Threads are vCPUs: the
// `vcpu` arguments (0-based; gdb's thread id is vcpu + 1) say whose registers, and whose address
// translation memory and breakpoints use; absent: vCPU 0.

import type { RegisterValues } from "./registers.js";

/** Z/z packet types: 0 software breakpoint, 1 hardware breakpoint, 2 write, 3 read, 4 access watchpoint. */
export type BreakpointType = 0 | 1 | 2 | 3 | 4;

export type WatchStop = "watch" | "rwatch" | "awatch";

/** Why the target stopped, as a stop reply says it. */
export type StopEvent =
  | {
      kind: "signal";
      /** GDB signal number: 5 SIGTRAP (breakpoints, steps, watchpoints), 2 SIGINT (Ctrl-C) */
      signal: number;
      reason?: "swbreak" | "hwbreak";
      watch?: { type: WatchStop; address: bigint };
      /** the vCPU that stopped (hit the breakpoint or watchpoint, finished the step); absent: 0 */
      vcpu?: number;
    }
  /** the guest ended (debug-exit, power-off, final HLT): gdb treats the process as exited */
  | { kind: "exited"; code: number }
  /** the guest cannot go on (triple fault, an error in the VMM) */
  | { kind: "terminated"; signal: number };

/** Thrown by targets for a failed request; the session answers `E<code>`. */
export class GdbTargetError extends Error {
  /** Always "GdbTargetError" (the class name, for people). */
  override name = "GdbTargetError";
  constructor(
    message: string,
    /** errno-like code for the E reply */
    readonly code = 1,
  ) {
    super(message);
  }
}

export interface GdbTarget {
  /** Stops the target if it runs (a new connection: gdb expects a stopped target) and says why it is stopped. */
  halt(): Promise<StopEvent>;
  /** how many vCPUs gdb sees as threads (vCPUs 0 .. n-1); absent: 1 */
  threads?(): number;
  readRegisters(vcpu?: number): RegisterValues;
  /** writes the named registers, leaving the others */
  writeRegisters(values: RegisterValues, vcpu?: number): void;
  /** reads up to `length` bytes; fewer when the range leaves mapped memory (none: throws) */
  readMemory(address: bigint, length: number, vcpu?: number): Uint8Array;
  writeMemory(address: bigint, data: Uint8Array, vcpu?: number): void;
  /** false: this kind of breakpoint is not supported (the session answers empty); throws on failure */
  insertBreakpoint(type: BreakpointType, address: bigint, kind: number, vcpu?: number): boolean;
  removeBreakpoint(type: BreakpointType, address: bigint, kind: number, vcpu?: number): boolean;
  /**
   * Starts the whole target running, or vCPU `vcpu` stepping one instruction (the others stay
   * stopped); its stop comes through the session's stopped().
   */
  resume(mode: "continue" | "step", vcpu?: number): void;
  /** Ctrl-C: stop a running target soon (its stop comes through stopped(), signal 2). */
  interrupt(): void;
  /** gdb detaches: breakpoints go, the target runs on by itself. */
  detach(): void;
  /** gdb kills the target. */
  kill(): void;
  /** `monitor ...` (qRcmd): the text to print */
  monitor?(command: string, vcpu?: number): string;
}
