// A soft vCPU moving between worker threads (threads-pool.ts): VMCLEAR on the processor it leaves,
// VMPTRLD on the one it arrives at, everything else it has carried over. In the middle of an
// instruction whose MMIO accesses the host completes one at a time, the access already completed
// is replayed on the new processor, not made again; a guest's spin and halts move between threads
// while the event loop stays free; the debugger, which needs a thread per vCPU, is refused.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VcpuBackend } from "../../lib/vmm/backend.js";
import type { SoftVcpuThreads } from "../../lib/vmm/backends/soft/threads.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { exitCodeOf, expectedSmp, smpCmdline, smpImage } from "../support/smp-guest.js";

const MMIO = 0xd0000000;

async function threadsOf(vm: Machine): Promise<SoftVcpuThreads> {
  const b = vm.backend as unknown as { vcpuThreads(): Promise<SoftVcpuThreads | undefined> };
  const t = await b.vcpuThreads();
  if (!t) throw new Error("no vCPU threads");
  return t;
}

describe("a soft vCPU that moves between worker threads", () => {
  it("in the middle of a read-modify-write of MMIO completes each access once", async () => {
    // one vCPU on two threads: it moves from the first to the second between its two accesses
    const vm = await createMachine({ backend: "soft", vcpus: 1, memoryMiB: 4, vcpuThreads: 2 });
    try {
      const reads: number[] = [];
      const writes: number[] = [];
      vm.mmio.onRead(MMIO, 4, (_a, size) => {
        reads.push(size);
        return 0x1234;
      });
      vm.mmio.onWrite(MMIO, 4, (_a, _size, value) => {
        writes.push(value);
      });
      // cli; add dword [0xd0000000], 5; hlt
      const code = [0xfa, 0x81, 0x05, 0x00, 0x00, 0x00, 0xd0, 0x05, 0x00, 0x00, 0x00, 0xf4];
      vm.loadFlat(new Uint8Array(code), { address: 0x100000, mode: "protected" });
      const threads = await threadsOf(vm);
      expect(threads.threadCount).toBe(2);

      // the read exits and is completed by the handler; the run ends before the vCPU re-enters
      let r = await vm.run({ maxExits: 1, timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("max-exits");
      expect(reads).toEqual([4]);
      const first = threads.workerOf(0);
      expect(first).toBeGreaterThanOrEqual(0);
      // one entry with no instructions to run: the completion is applied, the instruction is
      // left half done (as a snapshot's settling entry leaves it)
      const b = vm.vcpu(0).backend as VcpuBackend & { mmioInFlight(): boolean };
      b.setInstructionBudget?.(0);
      expect(b.run().kind).toBe("intr");
      b.setInstructionBudget?.(undefined);
      expect(b.mmioInFlight()).toBe(true);

      // VMCLEAR there, VMPTRLD on the other thread: the completed read goes with the vCPU
      const other = 1 - first;
      expect(threads.moveVcpu(0, other)).toBe(true);
      expect(threads.workerOf(0)).toBe(other);
      r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("hlt");
      expect(threads.workerOf(0)).toBe(other);
      expect(reads).toEqual([4]);
      expect(writes).toEqual([0x1234 + 5]);
      expect(vm.vcpu(0).getRegs().rip).toBe(0x100000n + BigInt(code.length));
    } finally {
      vm.close();
    }
  });

  it("keeps its registers, x87/SSE state and MSRs across a move", async () => {
    const vm = await createMachine({ backend: "soft", vcpus: 2, memoryMiB: 4, vcpuThreads: 2 });
    try {
      // mov eax, 0x11223344; fld1; fldpi; cli; hlt
      const code = [0xb8, 0x44, 0x33, 0x22, 0x11, 0xd9, 0xe8, 0xd9, 0xeb, 0xfa, 0xf4];
      vm.loadFlat(new Uint8Array(code), { address: 0x100000, mode: "protected" });
      vm.vcpu(0).setMsr(0xc0000102, 0x1234_5678_9abcn); // KERNEL_GS_BASE, kept outside the VMCS
      const r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("hlt");
      const threads = await threadsOf(vm);
      const before = vm.vcpu(0).backend as unknown as {
        captureSoftState(): { soft: { fpu: string; fpuTop: number } };
      };
      const saved = before.captureSoftState().soft;
      expect(saved.fpuTop).toBe(6);
      const regs = vm.vcpu(0).getRegs();
      const from = threads.workerOf(0);
      expect(threads.moveVcpu(0, 1 - from)).toBe(true);
      expect(threads.workerOf(0)).toBe(1 - from);
      expect(vm.vcpu(0).getRegs()).toEqual(regs);
      expect(vm.vcpu(0).getMsr(0xc0000102)).toBe(0x1234_5678_9abcn);
      const after = before.captureSoftState().soft;
      expect(after.fpu).toBe(saved.fpu);
      expect(after.fpuTop).toBe(saved.fpuTop);
    } finally {
      vm.close();
    }
  });

  it("4 vCPUs spinning on 2 threads leave the event loop free", async () => {
    const vm = await createMachine({ backend: "soft", vcpus: 4, memoryMiB: 16, vcpuThreads: 2 });
    try {
      let out = "";
      addPcDevices(vm, { serial: (b: Uint8Array) => (out += Buffer.from(b).toString("latin1")) });
      vm.load(smpImage(), { format: "multiboot", cmdline: smpCmdline("spinlock", 20_000) });
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const t0 = performance.now();
      const result = await vm.run({ timeoutMs: 60_000 });
      const ms = performance.now() - t0;
      clearInterval(timer);
      const want = expectedSmp("spinlock", 4, 20_000);
      expect(out).toBe(want.out);
      expect(result.reason, result.message).toBe("debug-exit");
      expect(result.exitCode).toBe(exitCodeOf(want.value));
      // timers ran throughout the run (not a wall-clock rate: at least a tenth of what was due)
      expect(ticks).toBeGreaterThan(Math.floor(ms / 5 / 10));
      const threads = await threadsOf(vm);
      expect(threads.threadCount).toBe(2);
    } finally {
      vm.close();
    }
  });

  it("a snapshot of 4 vCPUs on 2 threads resumes on 2 threads to the same result", async () => {
    // (the guest runs some 1.2 s to its end here, with its compute loop compiled: the snapshot
    // at 250 ms is well inside the run)
    const n = 20_000_000;
    const dir = mkdtempSync(join(tmpdir(), "nodevmm-migrate-"));
    const path = join(dir, "smp.snap");
    let out = "";
    const serial = (b: Uint8Array) => {
      out += Buffer.from(b).toString("latin1");
    };
    try {
      const vm = await createMachine({ backend: "soft", vcpus: 4, memoryMiB: 16, vcpuThreads: 2 });
      try {
        addPcDevices(vm, { serial });
        vm.load(smpImage(), { format: "multiboot", cmdline: smpCmdline("compute", n) });
        expect((await vm.run({ timeoutMs: 250 })).reason).toBe("timeout");
        await vm.snapshot(path);
      } finally {
        vm.close();
      }
      const again = await createMachine({
        backend: "soft",
        vcpuThreads: 2,
        restore: path,
        setup: (m) => {
          addPcDevices(m, { serial });
        },
      });
      try {
        const result = await again.run({ timeoutMs: 120_000 });
        expect(result.reason, result.message).toBe("debug-exit");
        expect(out).toBe(expectedSmp("compute", 4, n).out);
      } finally {
        again.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the debugger is refused with fewer threads than vCPUs", async () => {
    const vm = await createMachine({ backend: "soft", vcpus: 4, memoryMiB: 16, vcpuThreads: 2 });
    try {
      const b = vm.vcpu(1).backend as unknown as { setDebugControls(c: { monitorTrap: boolean }): void };
      expect(() => b.setDebugControls({ monitorTrap: true })).toThrow(/debugger needs a thread per vCPU/);
    } finally {
      vm.close();
    }
  });

  it("vcpuThreads is checked", async () => {
    await expect(createMachine({ backend: "soft", vcpus: 2, vcpuThreads: 0 })).rejects.toThrow(/vcpuThreads/);
    await expect(createMachine({ backend: "soft", vcpus: 2, vcpuThreads: 1.5 })).rejects.toThrow(
      /vcpuThreads/,
    );
    await expect(
      createMachine({ backend: "soft", vcpus: 2, vcpuThreads: 2, vcpuThread: false }),
    ).rejects.toThrow(/vcpuThread/);
  });
});
