// A worker thread keeps the interpreter (decoded and compiled blocks) of a soft vCPU that left it
// and takes it up again when the vCPU comes back (thread-worker.ts, vcpu-context.ts
// keptForArrival). What it kept must never make the vCPU run what memory no longer holds, nor
// code decoded for another mode: a block another vCPU rewrote while the vCPU was away runs as
// rewritten, and a vCPU that left in 64-bit mode and came back in compatibility mode decodes its
// code for that mode.

import { describe, expect, it } from "vitest";
import type { VcpuBackend } from "../../lib/vmm/backend.js";
import type { SoftVcpuThreads } from "../../lib/vmm/backends/soft/threads.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";

async function threadsOf(vm: Machine): Promise<SoftVcpuThreads> {
  const b = vm.backend as unknown as { vcpuThreads(): Promise<SoftVcpuThreads | undefined> };
  const t = await b.vcpuThreads();
  if (!t) throw new Error("no vCPU threads");
  return t;
}

/** bytes placed at addresses, with rel32 calls to a target filled in */
class Code {
  readonly bytes: Uint8Array;
  #at: number;
  constructor(
    readonly base: number,
    size: number,
  ) {
    this.bytes = new Uint8Array(size);
    this.#at = base;
  }
  org(address: number): this {
    this.#at = address;
    return this;
  }
  get here(): number {
    return this.#at;
  }
  emit(...b: number[]): this {
    this.bytes.set(b, this.#at - this.base);
    this.#at += b.length;
    return this;
  }
  /** CALL rel32 to `target` */
  call(target: number): this {
    const rel = (target - (this.#at + 5)) | 0;
    return this.emit(0xe8, rel & 0xff, (rel >> 8) & 0xff, (rel >> 16) & 0xff, (rel >>> 24) & 0xff);
  }
  /** JNZ rel8 to `target` */
  jnz(target: number): this {
    return this.emit(0x75, (target - (this.#at + 2)) & 0xff);
  }
  /** JE rel8 to `target` */
  je(target: number): this {
    return this.emit(0x74, (target - (this.#at + 2)) & 0xff);
  }
  /** xor ebx, ebx; mov ecx, n; loop: call x; add ebx, eax; dec ecx (FF C9, in every mode); jnz loop */
  sumLoop(n: number, x: number): this {
    this.emit(0x31, 0xdb, 0xb9, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24);
    const loop = this.here;
    return this.call(x).emit(0x01, 0xc3, 0xff, 0xc9).jnz(loop);
  }
  /** mov al, 0; out 0xf4, al: the debug-exit device ends the run */
  debugExit(): this {
    return this.emit(0xb0, 0x00, 0xe6, 0xf4);
  }
}

const ROUNDS = 1000;

describe("a soft vCPU's interpreter kept by the worker it left", () => {
  it("runs code another vCPU rewrote while it was away as rewritten", async () => {
    const vm = await createMachine({ backend: "soft", vcpus: 2, memoryMiB: 4, vcpuThreads: 2 });
    try {
      addPcDevices(vm, {});
      const BASE = 0x20000;
      const X = 0x20100; // mov eax, 1; ret (the AP makes it mov eax, 2)
      const AP = 0x21000; // the AP's start (SIPI vector 0x21), real mode
      const FLAG = 0x22000; // a data page: the host lets vCPU 0 go on
      const c = new Code(BASE, 0x2000);
      // vCPU 0: sum ROUNDS calls of X, exit; wait for the flag; sum again, exit
      c.org(BASE).emit(0xfa).sumLoop(ROUNDS, X).debugExit();
      const spin = c.here;
      c.emit(0xf3, 0x90, 0x80, 0x3d, FLAG & 0xff, (FLAG >> 8) & 0xff, FLAG >> 16, 0, 0x00).je(spin);
      c.sumLoop(ROUNDS, X).debugExit().emit(0xfa, 0xf4, 0xeb, 0xfd);
      c.org(X).emit(0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3);
      // vCPU 1: mov ax, 0x2000; mov ds, ax; mov byte [0x0101], 2 (X's immediate); exit; cli; hlt
      c.org(AP)
        .emit(0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xc6, 0x06, 0x01, 0x01, 0x02)
        .debugExit()
        .emit(0xfa, 0xf4, 0xeb, 0xfd);
      vm.loadFlat(c.bytes, { address: BASE, mode: "protected" });
      const threads = await threadsOf(vm);

      let r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("debug-exit");
      expect(vm.vcpu(0).getRegs().rbx).toBe(BigInt(ROUNDS));
      const home = threads.workerOf(0);
      expect(home).toBeGreaterThanOrEqual(0);

      // vCPU 0 leaves: its interpreter, with X's block, stays on its worker
      expect(threads.moveVcpu(0, 1 - home)).toBe(true);
      expect(threads.keptOn(0)).toEqual([home]);

      // vCPU 1 rewrites X (on the worker vCPU 0 left, the free one) while vCPU 0 spins elsewhere
      (vm.vcpu(1).backend as VcpuBackend & { signal(k: "sipi", v: number): void }).signal("sipi", AP >> 12);
      r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("debug-exit");
      expect(vm.memory.readU8(X + 1)).toBe(2);
      expect(threads.workerOf(0)).toBe(1 - home);

      // back to its worker, which takes its kept interpreter up again
      const reused = threads.reusedInterpreters(0);
      expect(threads.moveVcpu(0, home)).toBe(true);
      vm.memory.write(FLAG, new Uint8Array([1]));
      r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("debug-exit");
      expect(threads.workerOf(0)).toBe(home);
      expect(threads.reusedInterpreters(0)).toBe(reused + 1);
      expect(threads.keptOn(0)).toEqual([1 - home]);
      // the rewritten X, not the block kept from before
      expect(vm.vcpu(0).getRegs().rbx).toBe(BigInt(2 * ROUNDS));
    } finally {
      vm.close();
    }
  });

  it("decodes its code for the mode it comes back in", async () => {
    const vm = await createMachine({ backend: "soft", vcpus: 1, memoryMiB: 4, vcpuThreads: 2 });
    try {
      addPcDevices(vm, {});
      const BASE = 0x100000;
      // 64-bit: inc rax; ret. Compatibility mode: dec eax; inc eax; ret
      const X = 0x100100;
      const c = new Code(BASE, 0x200);
      c.org(BASE).emit(0x31, 0xc0).sumLoop(ROUNDS, X).debugExit().emit(0xf4, 0xeb, 0xfd);
      c.org(X).emit(0x48, 0xff, 0xc0, 0xc3);
      vm.loadFlat(c.bytes, { address: BASE, mode: "long" });
      const threads = await threadsOf(vm);

      let r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("debug-exit");
      // each call returns the count so far: 1 + 2 + ... + ROUNDS
      expect(vm.vcpu(0).getRegs().rbx).toBe(BigInt((ROUNDS * (ROUNDS + 1)) / 2));
      const home = threads.workerOf(0);
      expect(threads.moveVcpu(0, 1 - home)).toBe(true);
      expect(threads.keptOn(0)).toEqual([home]);

      // while away: the same code again, from compatibility mode (CS.L clear, CS.D set)
      const vcpu = vm.vcpu(0);
      const sregs = vcpu.getSregs();
      vcpu.setSregs({ ...sregs, cs: { ...sregs.cs, l: false, db: true }, ss: { ...sregs.ss, db: true } });
      vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(BASE), rax: 0n });
      const reused = threads.reusedInterpreters(0);
      expect(threads.moveVcpu(0, home)).toBe(true);
      r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason, r.message).toBe("debug-exit");
      expect(threads.reusedInterpreters(0)).toBe(reused + 1);
      expect(vcpu.getSregs().cs.l).toBe(false);
      // X leaves EAX as it was (0): the 64-bit block kept for X did not run
      expect(vcpu.getRegs().rbx).toBe(0n);
    } finally {
      vm.close();
    }
  });
});
