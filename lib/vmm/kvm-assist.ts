// Until the KVM backend provides VcpuBackend.crossThreadKick() and isHalted() itself, the machine
// derives them: the vCPU fd from /proc/self/fd ("anon_inode:kvm-vcpu:N"), the addon from lib/kvm,
// and the MP state through the same binding. Used only when the backend is KVM, the addon is the
// binding in use, and the methods are missing.

import { readdirSync, readlinkSync } from "node:fs";
import type { VcpuBackend } from "./backend.js";

export interface KvmAssist {
  crossThreadKick(): { addonPath: string; vcpuFd: number } | undefined;
  isHalted(): boolean;
}

/** The process's open fds of KVM vCPUs with this index (several when several VMs are open). */
export function vcpuFds(index: number): Set<number> {
  const fds = new Set<number>();
  try {
    for (const name of readdirSync("/proc/self/fd")) {
      try {
        if (readlinkSync(`/proc/self/fd/${name}`) === `anon_inode:kvm-vcpu:${index}`) fds.add(Number(name));
      } catch {
        // closed while we looked
      }
    }
  } catch {
    // no /proc: nothing found
  }
  return fds;
}

/**
 * `before`: the vCPU fds that existed before this machine created its vCPU, so that with several
 * VMs open the new one is told apart. Gives up unless exactly one candidate remains.
 */
export async function kvmAssist(vcpu: VcpuBackend, before: Set<number>): Promise<KvmAssist | undefined> {
  if (process.env.NODEVMM_BINDING === "koffi") return undefined;
  let kvm: typeof import("../kvm/index.js");
  try {
    kvm = await import("../kvm/index.js");
  } catch {
    return undefined;
  }
  const addonPath = kvm.addonPath();
  if (!addonPath) return undefined;
  const candidates = [...vcpuFds(vcpu.index)].filter((fd) => !before.has(fd));
  if (candidates.length !== 1) return undefined;
  const fd = candidates[0]!;
  let binding: ReturnType<typeof kvm.loadBinding>;
  try {
    binding = kvm.loadBinding("addon");
  } catch {
    return undefined;
  }
  const mp = new DataView(new ArrayBuffer(4));
  return {
    crossThreadKick: () => ({ addonPath, vcpuFd: fd }),
    isHalted: () => {
      try {
        binding.ioctl(fd, kvm.KVM_GET_MP_STATE, mp);
        return mp.getUint32(0, true) === kvm.KVM_MP_STATE.HALTED;
      } catch {
        return false;
      }
    },
  };
}
