// CPUID as the soft hypervisor answers it: the interpreter's own model (vendor, family, exactly the
// features it implements), with VMX hidden and the hypervisor bit and leaf 0x40000000 present.

import { cpuidModel } from "../../../cpu/index.js";

export function answerCpuid(leaf: number, subleaf: number, apicId: number): [number, number, number, number] {
  const r = cpuidModel(leaf >>> 0, subleaf >>> 0, apicId);
  if (leaf >>> 0 === 1) {
    r[2] = (r[2] & ~(1 << 5)) | (1 << 31); // no VMX for the guest; running under a hypervisor
  }
  return r;
}
