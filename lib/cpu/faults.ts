// Control flow out of an instruction. Both are thrown from deep inside the executor and caught by
// the run loop, which has not yet committed RIP, so the instruction is abandoned cleanly.

/** An architectural exception raised by the instruction being executed. */
export class CpuFault {
  constructor(
    readonly vector: number,
    readonly code: number | undefined,
    /** faulting linear address for #PF */
    readonly cr2?: number,
  ) {}
}

/** A hook (or EPT/MMIO) recorded a VM exit: stop before the instruction takes effect. */
export class ExitSignal {}
export const EXIT_SIGNAL = new ExitSignal();

/** The interpreter was asked to do something it cannot (bad setup from the host side). */
export class CpuConfigError extends Error {
  override name = "CpuConfigError";
}

export const enum Vec {
  DE = 0,
  DB = 1,
  NMI = 2,
  BP = 3,
  OF = 4,
  BR = 5,
  UD = 6,
  NM = 7,
  DF = 8,
  TS = 10,
  NP = 11,
  SS = 12,
  GP = 13,
  PF = 14,
  MF = 16,
  AC = 17,
  MC = 18,
  XM = 19,
}
