// lib/kvm: the KVM API in TypeScript over a system-call binding (the addon or koffi).
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
