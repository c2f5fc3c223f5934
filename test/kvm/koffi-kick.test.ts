// The koffi binding kicks a vCPU out of KVM_RUN from another thread (immediate_exit + a signal to
// the vCPU thread, as the addon and Firecracker do): guests that never exit to user space end as
// "intr" exits instead of hanging the process.

import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { availableBindings, Kvm, type KvmVcpu } from "../../lib/kvm/index.js";
import { KICK_SIGNAL } from "../../lib/kvm/koffi-binding.js";
import { KvmRunWorker } from "../../lib/vmm/kvm-worker.js";
import { absoluteNow, Watchdog } from "../../lib/vmm/watchdog.js";
import { startKickWorker } from "../binding/kick-worker.js";
import { enterRealMode } from "../support/modes.js";
import { probe, skipReason } from "./helpers.js";

const noKoffi = !availableBindings().includes("koffi");
const reason = noKoffi ? " (skipped: koffi is not installed)" : skipReason;

const JMP_SELF = [0xeb, 0xfe];
const CLI_HLT = [0xfa, 0xf4];
/** out 0xe9,al; jmp back to the out: an io exit per entry */
const OUT_LOOP = [0xe6, 0xe9, 0xeb, 0xfc];

let open: Kvm[] = [];
afterEach(() => {
  for (const k of open) k.close();
  open = [];
});

/** a koffi VM with the in-kernel irqchip (HLT then waits in the kernel) running `code` at 0x1000 */
function koffiVcpu(code: number[]): KvmVcpu {
  const kvm = Kvm.open({ binding: "koffi" });
  open.push(kvm);
  const vm = kvm.createVm();
  vm.setTssAddress(0xfffbd000);
  vm.setIdentityMapAddress(0xfffbc000);
  vm.createIrqchip();
  vm.allocateMemory(0, 0x10000).bytes.set(code, 0x1000);
  const vcpu = vm.createVcpu(0);
  enterRealMode(vcpu, 0x1000);
  return vcpu;
}

const vcpuMappings = (): number =>
  readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.includes("kvm-vcpu")).length;

describe.skipIf(!probe.usable || noKoffi)(`koffi cross-thread kick${reason}`, () => {
  it(`uses ${KICK_SIGNAL}, with a handler Node installed (not a default action)`, () => {
    const vcpu = koffiVcpu(JMP_SELF);
    expect(vcpu.binding.crossThreadKick).toBe(true);
    const t = vcpu.binding.kickTarget?.(vcpu.fd);
    expect(t).toMatchObject({ binding: "koffi", vcpuFd: vcpu.fd, signal: constants.signals.SIGURG });
    expect(process.listenerCount(KICK_SIGNAL)).toBeGreaterThan(0);
  });

  it.each([
    ["spins (jmp $)", JMP_SELF, 0x1000n],
    ["halts with interrupts off (cli; hlt)", CLI_HLT, 0x1002n],
  ])("a worker kicks a guest that %s out of KVM_RUN: an intr exit", async (_, code, rip) => {
    const vcpu = koffiVcpu(code);
    const w = await startKickWorker(vcpu.binding.kickTarget!(vcpu.fd)!);
    try {
      w.kickAfter(50);
      expect(vcpu.run().kind).toBe("intr");
      expect(vcpu.getRegs().rip).toBe(rip);
    } finally {
      await w.close();
    }
  });

  it("a kick from another thread before the run is not lost, and ends only that run", async () => {
    const vcpu = koffiVcpu(OUT_LOOP);
    const w = await startKickWorker(vcpu.binding.kickTarget!(vcpu.fd)!);
    try {
      await w.kickNow(); // no run in progress: pending + immediate_exit wait for the next entry
      expect(vcpu.run().kind).toBe("intr");
      expect(vcpu.run()).toMatchObject({ kind: "io", port: 0xe9 });
      expect(vcpu.run()).toMatchObject({ kind: "io", port: 0xe9 });
    } finally {
      await w.close();
    }
  });

  it("the Watchdog kicks a koffi vCPU at its deadline, and unmaps its kvm_run when closed", async () => {
    const vcpu = koffiVcpu(CLI_HLT);
    const before = vcpuMappings();
    const w = new Watchdog(vcpu.binding.kickTarget!(vcpu.fd)!);
    try {
      await w.ready();
      expect(vcpuMappings()).toBe(before + 1);
      w.arm(absoluteNow() + 50);
      expect(vcpu.run().kind).toBe("intr");
    } finally {
      await w.close();
    }
    expect(w.lastError).toBeUndefined();
    expect(vcpuMappings()).toBe(before);
  });

  it("a kicker refuses an fd that is not a vCPU", async () => {
    const vcpu = koffiVcpu(JMP_SELF);
    const t = vcpu.binding.kickTarget!(vcpu.fd)!;
    const notVcpu = vcpu.binding.eventfd(0, 0);
    try {
      await expect(startKickWorker({ ...t, vcpuFd: notVcpu })).rejects.toThrow(/not a KVM vCPU/);
      const w = new Watchdog({ ...t, vcpuFd: notVcpu });
      await expect(w.ready()).rejects.toThrow(/not a KVM vCPU/);
      await w.close();
    } finally {
      vcpu.binding.close(notVcpu);
    }
  });
});

describe("the vCPU thread with a koffi target", () => {
  it("is refused cleanly (it runs KVM_RUN through the addon only), so the machine can fall back", async () => {
    const w = new KvmRunWorker({ binding: "koffi", addonPath: "/nonexistent/koffi", vcpuFd: 3 });
    await expect(w.ready()).rejects.toThrow(/needs the addon binding, not koffi/);
    expect(w.closed).toBe(true);
    expect(() => w.start()).toThrow(/closed/);
    w.close();
  });
});
