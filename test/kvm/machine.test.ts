// The rest of lib/kvm on /dev/kvm: in-kernel irqchip delivering an interrupt, kicks (same thread
// and from a worker), system/VM/vCPU queries, typed errors.

import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import {
  addonPath,
  KVM_CAP,
  KVM_MP_STATE,
  Kvm,
  KvmClosedError,
  KvmError,
  KvmMemoryRegionError,
} from "../../lib/kvm/index.js";
import { IRQ3_GUEST } from "../support/shared-guests.js";
import { enterRealMode, makeVm, probe, skipReason, watchdog } from "./helpers.js";

describe.skipIf(!probe.usable)(`KVM machine features${skipReason}`, () => {
  it("irqchip + KVM_IRQ_LINE: the guest takes IRQ 3 through its IVT and acknowledges it", async () => {
    const t = makeVm(0x10000, (vm) => vm.createIrqchip());
    try {
      // the very guest the soft suite runs (test/soft/kvm-suite.test.ts)
      t.mem.set(IRQ3_GUEST.code, IRQ3_GUEST.codeAt);
      t.mem.set(IRQ3_GUEST.handler, IRQ3_GUEST.handlerAt);
      enterRealMode(t.vcpu, IRQ3_GUEST.codeAt);
      expect(t.vcpu.run()).toMatchObject({ kind: "io", port: IRQ3_GUEST.readyPort, direction: "out" });
      t.vm.setIrqLine(IRQ3_GUEST.irq, true);
      t.vm.setIrqLine(IRQ3_GUEST.irq, false);
      // HLT stays in the kernel with an in-kernel irqchip: the next exit is the handler's OUT
      const dog = await watchdog(t.vcpu, 20_000);
      const ack = t.vcpu.run();
      await dog.stop();
      expect(ack).toMatchObject({ kind: "io", port: IRQ3_GUEST.ackPort });
      if (ack.kind === "io") expect(ack.data[0]).toBe(IRQ3_GUEST.ackValue);
      expect(t.vcpu.getLapic().length).toBe(1024);
    } finally {
      t.close();
    }
  });

  it("kick before run: the next run is an intr exit, the one after runs the guest", () => {
    const t = makeVm();
    try {
      t.mem.set([0xf4], 0x1000);
      enterRealMode(t.vcpu, 0x1000);
      t.vcpu.kick();
      expect(t.vcpu.run().kind).toBe("intr");
      expect(t.vcpu.immediateExit).toBe(false);
      expect(t.vcpu.run().kind).toBe("hlt");
    } finally {
      t.close();
    }
  });

  // koffi cannot signal another thread's KVM_RUN: this needs the addon
  it.skipIf(probe.binding !== "addon")(
    "kick from a worker thread ends a guest spinning in `jmp $`",
    async () => {
      const t = makeVm();
      try {
        t.mem.set([0xeb, 0xfe], 0x1000); // jmp $
        t.mem.set([0xf4], 0x1100);
        enterRealMode(t.vcpu, 0x1000);
        const worker = new Worker(
          `const { parentPort, workerData } = require("node:worker_threads");
         const addon = require(workerData.addon);
         parentPort.once("message", () => setTimeout(() => { addon.kick(workerData.fd); parentPort.postMessage("kicked"); }, 50));`,
          { eval: true, workerData: { addon: addonPath(), fd: t.vcpu.fd } },
        );
        const kicked = new Promise((resolve) => worker.once("message", resolve));
        await new Promise((resolve) => worker.once("online", resolve));
        worker.postMessage("go");
        const exit = t.vcpu.run(); // blocks this thread until the worker's kick
        expect(exit.kind).toBe("intr");
        expect(await kicked).toBe("kicked");
        await worker.terminate();
        expect(t.vcpu.getRegs().rip).toBe(0x1000n); // still spinning where it was
        t.vcpu.setRegs({ ...t.vcpu.getRegs(), rip: 0x1100n });
        expect(t.vcpu.run().kind).toBe("hlt"); // the kick was consumed
      } finally {
        t.close();
      }
    },
  );

  it("system, VM and vCPU queries", () => {
    const t = makeVm(0x10000, (vm) => {
      vm.createIrqchip();
      vm.createPit2();
    });
    try {
      expect(t.kvm.apiVersion).toBe(12);
      expect(t.kvm.checkExtension(KVM_CAP.USER_MEMORY)).toBeGreaterThan(0);
      expect(t.vm.checkExtension(KVM_CAP.IRQCHIP)).toBeGreaterThan(0);
      expect(t.kvm.vcpuMmapSize()).toBeGreaterThanOrEqual(4096);
      const cpuid = t.kvm.getSupportedCpuid();
      expect(cpuid.find((e) => e.function === 0)?.eax).toBeGreaterThan(0);
      t.vcpu.setCpuid2(cpuid);
      // what the vCPU holds is what it was given: the same leaves in the same order (KVM may adjust
      // register values, e.g. OSXSAVE or the APIC id, so only the leaf keys are compared)
      const key = (e: { function: number; index: number }) => `${e.function.toString(16)}.${e.index}`;
      expect(t.vcpu.getCpuid2().map(key)).toEqual(cpuid.map(key));
      // a smaller set replaces it entirely (no stale entries survive)
      const leaf0 = cpuid.filter((e) => e.function === 0);
      t.vcpu.setCpuid2(leaf0);
      expect(t.vcpu.getCpuid2().map(key)).toEqual(["0.0"]);
      t.vcpu.setCpuid2(cpuid);
      const msrs = t.kvm.getMsrIndexList();
      expect(msrs).toContain(0x10); // IA32_TIME_STAMP_COUNTER
      t.vcpu.setMsr(0xc0000102, 0x1234000n); // KERNEL_GS_BASE
      expect(t.vcpu.getMsr(0xc0000102)).toBe(0x1234000n);
      expect(t.vcpu.getMpState()).toBe(KVM_MP_STATE.RUNNABLE);
      const ev = t.vcpu.getVcpuEvents();
      expect(ev.exception.injected).toBe(false);
      t.vcpu.setVcpuEvents(ev);
      const fpu = t.vcpu.getFpu();
      fpu.xmm[0] = 0x5a;
      t.vcpu.setFpu(fpu);
      expect(t.vcpu.getFpu().xmm[0]).toBe(0x5a);
      const c1 = t.vm.getClock().clock;
      expect(t.vm.getClock().clock).toBeGreaterThanOrEqual(c1);
      const efd = t.kvm.binding.eventfd(0, 0);
      try {
        t.vm.registerIoevent(efd, 0x500, { pio: true, length: 1 });
        t.vm.unregisterIoevent(efd, 0x500, { pio: true, length: 1 });
        t.vm.registerIrqfd(efd, 5);
        t.vm.unregisterIrqfd(efd, 5);
      } finally {
        t.kvm.binding.close(efd);
      }
    } finally {
      t.close();
    }
  });

  it("memory regions: unaligned and overlapping ones are refused before any ioctl", () => {
    const kvm = Kvm.open();
    try {
      const vm = kvm.createVm();
      vm.allocateMemory(0, 0x4000);
      let calls = 0;
      const real = kvm.binding.setUserMemoryRegion;
      Object.defineProperty(vm, "binding", {
        value: {
          ...kvm.binding,
          setUserMemoryRegion: (...a: Parameters<typeof real>) => {
            calls++;
            real(...a);
          },
        },
      });
      const mem = kvm.binding.mmapAnonymous(0x2000);
      expect(() => vm.setMemoryRegion(0x3000, mem)).toThrow(KvmMemoryRegionError); // overlaps slot 0
      expect(() => vm.setMemoryRegion(0x10800, mem)).toThrow(/not 4 KiB aligned/);
      expect(() => vm.setMemoryRegion(0x10000, mem, { slot: 0 })).toThrow(/slot 0 is in use/);
      expect(() => vm.allocateMemory(0x20000, 0x1800)).toThrow(KvmMemoryRegionError);
      expect(calls).toBe(0);
      expect(vm.setMemoryRegion(0x10000, mem).slot).toBe(1);
      expect(calls).toBe(1);
      vm.deleteMemoryRegion(1);
      kvm.binding.munmap(mem);
    } finally {
      kvm.close();
    }
  });

  it("use after close is a KvmClosedError; failed ioctls are KvmErrors naming the request", () => {
    const t = makeVm();
    const vcpu = t.vcpu;
    expect(() => t.vm.createVcpu(0)).toThrow(/already exists/);
    const err = (() => {
      try {
        t.vm.setIrqLine(3, true); // no irqchip: KVM answers ENXIO
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(KvmError);
    expect(err).toMatchObject({ syscall: "ioctl", request: "KVM_IRQ_LINE", code: "ENXIO" });
    t.close();
    expect(t.vm.closed).toBe(true);
    expect(() => vcpu.run()).toThrow(KvmClosedError);
    expect(() => vcpu.getRegs()).toThrow(KvmClosedError);
    expect(() => t.vm.createVcpu(1)).toThrow(KvmClosedError);
    expect(() => t.kvm.createVm()).toThrow(KvmClosedError);
    // guest memory was unmapped: the addon detaches its views, koffi leaves inert zero pages
    if (t.kvm.binding.kind === "addon") expect(t.mem.length).toBe(0);
    else expect(t.mem.every((b) => b === 0)).toBe(true);
  });
});
