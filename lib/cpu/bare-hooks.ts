// Hooks for running the interpreter without the VMX layer (tests, benchmarks): guest-physical
// addresses map 1:1 onto one RAM array; addresses past its end are MMIO served by callbacks.
//
// Defaults: port I/O without a handler exits (run() returns StopReason.Exit, `lastExit` says why);
// MMIO without a handler exits likewise; HLT halts (StopReason.Halted); CPUID, MSRs, RDTSC and
// everything else are answered by the interpreter's own model; exceptions are delivered through
// the guest IDT; a triple fault shuts down (StopReason.Shutdown).

import type { Access, InstructionContext, IoInfo, NonRootHooks, PageMapping } from "./hooks.js";
import { EXIT, MMIO } from "./hooks.js";

export interface BareHandlers {
  /** IN: the value read. Both portIn and portOut missing: port I/O exits. */
  portIn?(port: number, size: number): number;
  portOut?(port: number, size: number, value: number): void;
  /** MMIO read of `size` bytes at gpa (8-byte reads may return up to 2^53) */
  mmioRead?(gpa: number, size: number): number;
  mmioWrite?(gpa: number, size: number, lo: number, hi: number): void;
  /** return true to exit on HLT instead of halting */
  hlt?(): boolean;
  /** observe (and optionally turn into an exit by returning true) exceptions before delivery */
  event?(vector: number, errorCode: number | undefined, cr2: number | undefined): boolean;
}

export type BareExit =
  | { kind: "io"; info: IoInfo; ctx: InstructionContext }
  | { kind: "mmio"; gpa: number; size: number; write: boolean; lo: number; hi: number }
  | { kind: "hlt"; ctx: InstructionContext }
  | { kind: "event"; vector: number; errorCode: number | undefined }
  | { kind: "triple-fault" };

export interface BareHooks extends NonRootHooks {
  /** why the last StopReason.Exit happened */
  lastExit: BareExit | null;
}

export function createBareHooks(ram: Uint8Array, handlers: BareHandlers = {}): BareHooks {
  const ioHandled = handlers.portIn !== undefined || handlers.portOut !== undefined;
  const hooks: BareHooks = {
    lastExit: null,
    mapPage(
      gpa: number,
      _access: Access,
      _linear: number,
      _ps: boolean,
    ): PageMapping | typeof MMIO | typeof EXIT {
      if (gpa >= 0 && gpa + 4096 <= ram.length)
        return { bytes: ram, offset: gpa, readable: true, writable: true, executable: true };
      return MMIO;
    },
    mmio(gpa: number, size: number, write: boolean, lo: number, hi: number): number | typeof EXIT {
      if (write) {
        if (handlers.mmioWrite) {
          handlers.mmioWrite(gpa, size, lo, hi);
          return 0;
        }
      } else if (handlers.mmioRead) return handlers.mmioRead(gpa, size);
      hooks.lastExit = { kind: "mmio", gpa, size, write, lo, hi };
      return EXIT;
    },
    io(info: IoInfo, ctx: InstructionContext): boolean {
      if (ioHandled) return false;
      hooks.lastExit = { kind: "io", info, ctx };
      return true;
    },
    hlt(ctx: InstructionContext): boolean {
      if (handlers.hlt?.()) {
        hooks.lastExit = { kind: "hlt", ctx };
        return true;
      }
      return false;
    },
    cpuid: () => false,
    rdmsr: () => false,
    wrmsr: () => false,
    rdtsc: () => false,
    rdpmc: () => false,
    invlpg: () => false,
    crAccess: () => false,
    drAccess: () => false,
    other: () => false,
    descriptorTable: () => false,
    vmxInstruction: () => false,
    event(vector: number, _type, errorCode: number | undefined, cr2: number | undefined): boolean {
      if (handlers.event?.(vector, errorCode, cr2)) {
        hooks.lastExit = { kind: "event", vector, errorCode };
        return true;
      }
      return false;
    },
    tripleFault(): boolean {
      hooks.lastExit = { kind: "triple-fault" };
      return false;
    },
    boundary: () => false,
  };
  if (handlers.portIn) {
    const f = handlers.portIn;
    hooks.portIn = (port, size) => f(port, size);
  }
  if (handlers.portOut) {
    const f = handlers.portOut;
    hooks.portOut = (port, size, value) => f(port, size, value);
  }
  return hooks;
}
