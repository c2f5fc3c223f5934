// What the machine needs to bound a blocking KVM_RUN: a cross-thread kick target and a halted check.
// The KVM backend's vCPU provides both itself (VcpuBackend.crossThreadKick() / isHalted(), see
// lib/vmm/backends/kvm.ts); this module only hands them over in the shape machine.ts asks for.
// A vCPU without them (the koffi binding: no cross-thread kick) gets nothing, never a guess.

import type { VcpuBackend } from "./backend.js";

export interface KvmAssist {
  crossThreadKick(): { addonPath: string; vcpuFd: number } | undefined;
  isHalted(): boolean;
}

/**
 * Kept for machine.ts's call (it used to snapshot /proc/self/fd to tell a new vCPU fd apart); the
 * backend now names its own fd, so there is nothing to snapshot.
 */
export function vcpuFds(_index: number): Set<number> {
  return new Set();
}

/** The vCPU's own kick target and halted check, when it has both; undefined otherwise. */
export async function kvmAssist(vcpu: VcpuBackend, _before?: Set<number>): Promise<KvmAssist | undefined> {
  const { crossThreadKick, isHalted } = vcpu;
  if (!crossThreadKick || !isHalted) return undefined;
  return {
    crossThreadKick: () => crossThreadKick.call(vcpu),
    isHalted: () => isHalted.call(vcpu),
  };
}
