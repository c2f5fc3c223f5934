// Test support for the debug-feature suites: a guest whose #DB handler returns (setting RF in the
// pushed flags, so an instruction breakpoint lets its instruction run), and a record of every
// event the interpreter reports to the hooks before delivering it.

import { type Guest, type Mode, makeGuest } from "./guest.js";

/** handler stubs live at 0x8000 + 16 * vector (real mode: 0x8400 + 16 * vector) */
const DB_STUB = 0x8010;
const DB_STUB_REAL = 0x8410;

export interface SeenEvent {
  vector: number;
  /** the exit qualification the hooks see: DR6-style bits for a hardware #DB */
  bits: number | undefined;
  /** RIP the handler returns to (the instruction for a fault, the next one for a trap) */
  rip: number;
  /** RFLAGS as delivery pushes it */
  rflags: number;
}

export interface DebugGuest extends Guest {
  events: SeenEvent[];
}

/**
 * A guest in `mode` running `code`. The #DB handler is `or [flags], RF; iret` (real mode: IRET
 * alone, FLAGS has no RF); other vectors log and halt (guest.ts). `exitOn` makes the event hook
 * report a VM exit for those vectors instead of delivering them.
 */
export function debugGuest(
  mode: Mode,
  code: number[],
  opts: { exitOn?: number[]; portOut?: (port: number) => void } = {},
): DebugGuest {
  const events: SeenEvent[] = [];
  let g: Guest | undefined;
  g = makeGuest(mode, code, {
    event: (vector, _code, cr2) => {
      const cpu = g!.cpu;
      events.push({ vector, bits: cr2, rip: cpu.getRipNumber(), rflags: cpu.getRflagsNumber() });
      return opts.exitOn?.includes(vector) === true;
    },
    portOut: (port) => opts.portOut?.(port),
  });
  if (mode === "long") g.ram.set([0x81, 0x4c, 0x24, 0x10, 0x00, 0x00, 0x01, 0x00, 0x48, 0xcf], DB_STUB);
  else if (mode === "prot32") g.ram.set([0x81, 0x4c, 0x24, 0x08, 0x00, 0x00, 0x01, 0x00, 0xcf], DB_STUB);
  else g.ram[DB_STUB_REAL] = 0xcf;
  return Object.assign(g, { events });
}

export const BS = 0x4000;
export const BD = 0x2000;
export const RF = 0x10000;
export const TF = 0x100;

/** DR7 for breakpoint n: local enable, R/W and LEN fields */
export function dr7For(n: number, rw: number, len: number): bigint {
  return BigInt(((1 << (2 * n)) | (rw << (16 + 4 * n)) | (len << (18 + 4 * n))) >>> 0);
}
