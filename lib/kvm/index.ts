// lib/kvm: the KVM API in TypeScript over a system-call binding (the addon or koffi).

export { VmmError, VmmRangeError } from "../types/errors.js";
// the shared types its signatures use (also exported by the main entry, "nodevmm")
export type {
  CpuidExit,
  DebugExit,
  FailEntryExit,
  HltExit,
  HypercallExit,
  InternalErrorExit,
  IntrExit,
  IoExit,
  IrqWindowOpenExit,
  MmioExit,
  MsrExit,
  RawExit,
  ShutdownExit,
  SystemEventExit,
  UnknownExit,
  VmExit,
} from "../types/exits.js";
export type { DescriptorTable, Regs, Segment, SpecialRegs } from "../types/regs.js";
export * from "./binding.js";
export * from "./coalesced.js";
export * from "./constants.js";
export * from "./cpuid-topology.js";
export * from "./errors.js";
export * from "./exits.js";
export * from "./ioctls.js";
export { Kvm, type KvmOpenOptions, type KvmProbe, probeKvm } from "./kvm.js";
export * from "./layouts.js";
export * from "./structs.js";
export * from "./vcpu.js";
export * from "./vm.js";
