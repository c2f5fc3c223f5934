// Several soft vCPUs on one SoftBackend, driven through the VcpuBackend API on one thread: APs wait
// for SIPI, INIT/SIPI/NMI signals, CPUID per CPU, each vCPU's own interrupt controller, code written
// by one vCPU seen by another, and the latched events in a snapshot.
import { describe, expect, it } from "vitest";
import type { Interpreter } from "../../lib/cpu/index.js";
import { applyVcpu, captureVcpu } from "../../lib/snapshot/vcpu-state.js";
import type { VmExit } from "../../lib/types/exits.js";
import type { InterruptController, VcpuBackend } from "../../lib/vmm/backend.js";
import { answerCpuid, CPU_SIGNATURE } from "../../lib/vmm/backends/soft/cpuid.js";
import { createSoftBackend, SoftBackend, type SoftVcpu } from "../../lib/vmm/backends/soft.js";
import { Vcpu } from "../../lib/vmm/vcpu.js";

const MEM = 1 << 20;

function realModeAt(vcpu: VcpuBackend, rip: number, sp = 0x8000): void {
  const s = vcpu.getSregs();
  for (const seg of [s.cs, s.ds, s.es, s.ss, s.fs, s.gs]) {
    seg.selector = 0;
    seg.base = 0n;
  }
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = BigInt(rip);
  r.rsp = BigInt(sp);
  vcpu.setRegs(r);
}

/**
 * Starts an AP with a SIPI at a `jmp $` (page 0x20), so that its registers can then be set as a
 * test needs them (the SIPI itself sets CS:IP when it is taken, at the next entry).
 */
function start(ap: VcpuBackend, put: (at: number, code: number[]) => void): void {
  put(0x20000, [0xeb, 0xfe]);
  ap.signal?.("sipi", 0x20);
  ap.setInstructionBudget?.(10);
  expect(ap.run().kind).toBe("intr");
  ap.setInstructionBudget?.(undefined);
  expect(ap.getSregs().cs.selector).toBe(0x2000);
}

function machine(vcpus: number, interruptController?: InterruptController) {
  const backend = new SoftBackend({
    memoryBytes: MEM,
    vcpus,
    ...(interruptController ? { interruptController } : {}),
  });
  const cpus = Array.from({ length: vcpus }, (_, i) => backend.createVcpu(i) as SoftVcpu);
  const put = (at: number, code: number[]) => backend.memory.write(at, Uint8Array.from(code));
  return { backend, cpus, put };
}

/** runs until an exit other than "intr" (budgets and host timers end entries on the way) */
function next(v: VcpuBackend): VmExit {
  for (let i = 0; i < 1000; i++) {
    const e = v.run();
    if (e.kind !== "intr") return e;
  }
  throw new Error("no exit but intr");
}

function outByte(e: VmExit): number {
  if (e.kind !== "io" || e.direction !== "out") throw new Error(`expected an OUT, got ${e.kind}`);
  return e.data[0]!;
}

describe("application processors", () => {
  it("are created in the INIT state waiting for SIPI; vCPU 0 starts as before", () => {
    const { cpus } = machine(2);
    const [bsp, ap] = cpus as [SoftVcpu, SoftVcpu];
    expect(bsp.runnable()).toBe(true);
    expect(bsp.getRegs().rdx).toBe(0x600n);
    expect(bsp.getMsr(0x1b)).toBe(0xfee00900n);
    expect(ap.runnable()).toBe(false);
    expect(ap.getMsr(0x1b)).toBe(0xfee00800n);
    const r = ap.getRegs();
    expect(r.rip).toBe(0xfff0n);
    expect(r.rdx).toBe(BigInt(CPU_SIGNATURE));
    const s = ap.getSregs();
    expect(s.cs.selector).toBe(0xf000);
    expect(s.cs.base).toBe(0xffff0000n);
    expect(s.cr0).toBe(0x60000010n);
    expect(ap.lp.vmreadNumber(0x4826 /* activity */)).toBe(3);
  });

  it("run() of an AP waiting for SIPI returns intr promptly and runs nothing", () => {
    const { cpus } = machine(2);
    const ap = cpus[1]!;
    for (let i = 0; i < 3; i++) expect(ap.run().kind).toBe("intr");
    expect(ap.instructionsRetired()).toBe(0);
    expect(ap.runnable()).toBe(false);
  });

  it("INIT then SIPI start it in real mode at vector << 12 (CS = vector << 8, IP = 0), where it runs", () => {
    const { cpus, put } = machine(2);
    const ap = cpus[1]!;
    // 0x9000: mov ax, cs; out 0xe9, ax; hlt
    put(0x9000, [0x8c, 0xc8, 0xe7, 0xe9, 0xf4]);
    ap.signal("init");
    expect(ap.runnable()).toBe(false);
    ap.signal("sipi", 0x09);
    expect(ap.runnable()).toBe(true);
    const out = next(ap);
    expect(out.kind === "io" && out.size).toBe(2);
    if (out.kind !== "io") throw new Error();
    expect(out.data[0]! | (out.data[1]! << 8)).toBe(0x0900);
    const s = ap.getSregs();
    expect(s.cs.selector).toBe(0x900);
    expect(s.cs.base).toBe(0x9000n);
    expect(s.cr0 & 1n).toBe(0n);
    expect(next(ap).kind).toBe("hlt");
    expect(ap.getRegs().rip).toBe(5n);
  });

  it("a SIPI alone starts an AP that waits from its creation", () => {
    const { cpus, put } = machine(2);
    put(0xa000, [0xb0, 0x5a, 0xe6, 0xe9, 0xf4]); // mov al, 'Z'; out 0xe9, al; hlt
    cpus[1]!.signal("sipi", 0x0a);
    expect(outByte(next(cpus[1]!))).toBe(0x5a);
  });

  it("INIT of a running AP: back to the INIT state, waiting for SIPI; a second SIPI restarts it", () => {
    const { cpus, put } = machine(2);
    const ap = cpus[1]!;
    put(0x9000, [0xbb, 0x34, 0x12, 0xeb, 0xfe]); // mov bx, 0x1234; jmp $
    put(0xa000, [0xb0, 0x41, 0xe6, 0xe9, 0xf4]); // mov al, 'A'; out 0xe9, al; hlt
    ap.signal("sipi", 0x09);
    ap.setInstructionBudget(5000);
    expect(ap.run().kind).toBe("intr");
    ap.setInstructionBudget(undefined);
    expect(ap.getRegs().rbx).toBe(0x1234n);
    expect(ap.getRegs().rip).toBe(3n);
    ap.signal("init");
    expect(ap.runnable()).toBe(true);
    expect(ap.run().kind).toBe("intr");
    expect(ap.runnable()).toBe(false);
    const r = ap.getRegs();
    expect(r.rip).toBe(0xfff0n);
    expect(r.rbx).toBe(0n);
    expect(r.rdx).toBe(BigInt(CPU_SIGNATURE));
    expect(ap.getSregs().cs.selector).toBe(0xf000);
    ap.signal("sipi", 0x0a);
    expect(outByte(next(ap))).toBe(0x41);
  });

  it("INIT of the bootstrap processor: the INIT state, running from the reset vector (no SIPI)", () => {
    const { cpus, put } = machine(2);
    const bsp = cpus[0]!;
    put(0x1000, [0xbb, 0x34, 0x12, 0xeb, 0xfe]); // mov bx, 0x1234; jmp $
    realModeAt(bsp, 0x1000);
    bsp.setInstructionBudget(100);
    expect(bsp.run().kind).toBe("intr");
    expect(bsp.getRegs().rbx).toBe(0x1234n);
    bsp.signal("init");
    bsp.setInstructionBudget(0);
    expect(bsp.run().kind).toBe("intr");
    bsp.setInstructionBudget(undefined);
    // the INIT exit is taken at the next entry that runs anything: look at the state after it
    expect(bsp.lp.initPending).toBe(true);
    bsp.setInstructionBudget(1);
    bsp.run();
    bsp.setInstructionBudget(undefined);
    expect(bsp.lp.initPending).toBe(false);
    expect(bsp.runnable()).toBe(true);
    expect(bsp.lp.vmreadNumber(0x4826 /* activity */)).toBe(0);
    expect(bsp.getSregs().cs.base).toBe(0xffff0000n);
    expect(bsp.getRegs().rbx).toBe(0n);
  });

  it("a SIPI to a vCPU that does not wait for one is dropped", () => {
    const { cpus, put } = machine(2);
    const ap = cpus[1]!;
    put(0x9000, [0xeb, 0xfe]); // jmp $
    ap.signal("sipi", 0x09);
    ap.setInstructionBudget(100);
    expect(ap.run().kind).toBe("intr");
    ap.signal("sipi", 0x20);
    expect(ap.lp.sipiVector).toBe(-1);
    expect(ap.run().kind).toBe("intr");
    expect(ap.getSregs().cs.selector).toBe(0x900);
  });

  it("a signal with a bad SIPI vector is a RangeError", () => {
    const { cpus } = machine(2);
    expect(() => cpus[1]!.signal("sipi", 256)).toThrow(RangeError);
    expect(() => cpus[1]!.signal("sipi")).toThrow(RangeError);
  });
});

describe("NMI", () => {
  it("wakes a vCPU halted with IF=0 and runs the guest's NMI handler", () => {
    const { cpus, put } = machine(2);
    const bsp = cpus[0]!;
    put(0x1000, [0xfa, 0xf4]); // cli; hlt
    put(0x2000, [0xb0, 0x4e, 0xe6, 0xe9, 0xf4]); // mov al, 'N'; out 0xe9, al; hlt
    put(2 * 4, [0x00, 0x20, 0x00, 0x00]); // IVT[2] = 0000:2000
    realModeAt(bsp, 0x1000);
    expect(next(bsp).kind).toBe("hlt");
    expect(bsp.runnable()).toBe(false);
    expect(bsp.run().kind).toBe("hlt");
    bsp.signal("nmi");
    expect(bsp.runnable()).toBe(true);
    expect(outByte(next(bsp))).toBe(0x4e);
  });
});

describe("CPUID as each CPU sees it", () => {
  // mov eax, leaf; mov ecx, subleaf; cpuid; out 0xe9, al (the vCPU stays active for the next question)
  const cpuid = (leaf: number, sub: number) => [
    0x66,
    0xb8,
    leaf,
    0,
    0,
    0,
    0x66,
    0xb9,
    sub,
    0,
    0,
    0,
    0x0f,
    0xa2,
    0xe6,
    0xe9,
  ];
  function ask(v: VcpuBackend, put: (at: number, c: number[]) => void, at: number, leaf: number, sub = 0) {
    put(at, cpuid(leaf, sub));
    realModeAt(v, at);
    const s = v.getSregs();
    s.cr0 &= ~0x60000000n;
    v.setSregs(s);
    expect(next(v).kind).toBe("io");
    const r = v.getRegs();
    return [r.rax, r.rbx, r.rcx, r.rdx].map(Number) as [number, number, number, number];
  }

  it("initial APIC ID i in leaf 1 and leaf 0xB, four logical processors in one package", () => {
    const { cpus, put } = machine(4);
    for (const [i, v] of cpus.entries()) {
      if (i > 0) start(v, put);
      const [, ebx, , edx] = ask(v, put, 0x1000 + i * 0x100, 1);
      expect(ebx >>> 24).toBe(i);
      expect((ebx >>> 16) & 0xff).toBe(4);
      expect((edx >>> 28) & 1).toBe(1);
      const smt = ask(v, put, 0x1000 + i * 0x100, 0xb, 0);
      expect(smt).toEqual([0, 1, 0x100, i]);
      const core = ask(v, put, 0x1000 + i * 0x100, 0xb, 1);
      expect(core).toEqual([2, 4, 0x201, i]);
      const end = ask(v, put, 0x1000 + i * 0x100, 0xb, 2);
      expect(end).toEqual([0, 0, 2, i]);
    }
  });

  it("the topology in leaves 1, 4 and 0xB follows the vCPU count (one core per CPU, one package)", () => {
    const one = answerCpuid(1, 0, 0, 1);
    expect((one[1] >>> 16) & 0xff).toBe(1);
    expect((one[3] >>> 28) & 1).toBe(0);
    expect(answerCpuid(0xb, 1, 0, 1)).toEqual([0, 1, 0x201, 0]);
    for (const n of [1, 2, 3, 4, 8]) {
      const bits = Math.ceil(Math.log2(n));
      expect(answerCpuid(0xb, 1, n - 1, n)).toEqual([bits, n, 0x201, n - 1]);
      // leaf 4: every cache level has the same addressable core IDs; L3 is shared by the package
      const caches = [0, 1, 2, 3].map((sub) => answerCpuid(4, sub, 0, n));
      for (const [eax] of caches) expect(eax >>> 26).toBe((1 << bits) - 1);
      expect(caches.map(([eax]) => eax & 0x1f)).toEqual([1, 2, 3, 3]);
      expect((caches[3]![0] >>> 14) & 0xfff).toBe((1 << bits) - 1);
      expect((caches[0]![0] >>> 14) & 0xfff).toBe(0);
      expect(answerCpuid(4, 4, 0, n)[0] & 0x1f).toBe(0);
    }
  });
});

describe("each vCPU's own interrupt controller", () => {
  class FakeLapic implements InterruptController {
    pending: number[] = [];
    acked = 0;
    tpr = 0;
    setIrq(): void {}
    hasInterrupt(): boolean {
      return this.pending.length !== 0;
    }
    acknowledge(): number {
      this.acked++;
      return this.pending.shift()!;
    }
    readonly taskPriority = {
      get: () => this.tpr,
      set: (v: number) => {
        this.tpr = v;
      },
    };
  }
  function platform() {
    const lapics = [new FakeLapic(), new FakeLapic()];
    const pc: InterruptController = {
      setIrq: () => {},
      hasInterrupt: () => lapics[0]!.hasInterrupt(),
      acknowledge: () => lapics[0]!.acknowledge(),
      forCpu: (i: number) => lapics[i]!,
    };
    return { pc, lapics };
  }

  it("interrupts come from the CPU's own controller, and CR8 is its own TPR", () => {
    const { pc, lapics } = platform();
    const { cpus, put } = machine(2, pc);
    const [bsp, ap] = cpus as [SoftVcpu, SoftVcpu];
    put(0x1000, [0xfb, 0xf4, 0xeb, 0xfd]); // sti; hlt; jmp -3
    put(0x2000, [0xb0, 0x49, 0xe6, 0xe9, 0xcf]); // mov al, 'I'; out 0xe9, al; iret
    put(0x40 * 4, [0x00, 0x20, 0x00, 0x00]); // IVT[0x40] = 0000:2000
    realModeAt(bsp, 0x1000);
    start(ap, put);
    realModeAt(ap, 0x1000, 0x7000);
    expect(next(bsp).kind).toBe("hlt");
    expect(next(ap).kind).toBe("hlt");
    lapics[1]!.pending.push(0x40);
    expect(bsp.runnable()).toBe(false);
    expect(ap.runnable()).toBe(true);
    expect(bsp.run().kind).toBe("hlt");
    expect(outByte(next(ap))).toBe(0x49);
    expect(lapics[1]!.acked).toBe(1);
    expect(lapics[0]!.acked).toBe(0);
    ap.setSregs({ ...ap.getSregs(), cr8: 5n });
    expect(lapics[1]!.tpr).toBe(0x50);
    expect(lapics[0]!.tpr).toBe(0);
    expect(ap.getSregs().cr8).toBe(5n);
  });
});

describe("code written by one vCPU, run by another", () => {
  // vCPU 1 loops at 0x3000: mov al, imm8; out 0xe9, al; jmp 0x3000
  const LOOP = [0xb0, 0x11, 0xe6, 0xe9, 0xeb, 0xfa];

  function setup() {
    const m = machine(2);
    const [bsp, ap] = m.cpus as [SoftVcpu, SoftVcpu];
    m.put(0x3000, LOOP);
    start(ap, m.put);
    realModeAt(ap, 0x3000);
    // enough rounds for its blocks to be built and compiled
    for (let i = 0; i < 64; i++) expect(outByte(next(ap))).toBe(0x11);
    return { ...m, bsp, ap };
  }

  it("is seen at the other vCPU's next entry", () => {
    const { bsp, ap, put } = setup();
    const cpu = ap.lp.cpu as Interpreter;
    if (cpu.decodeCache) expect(cpu.codePages.get(0x3000)?.blocks.size ?? 0).toBeGreaterThan(0);
    // vCPU 0: mov byte [0x3001], 0x22; hlt
    put(0x1000, [0xc6, 0x06, 0x01, 0x30, 0x22, 0xf4]);
    realModeAt(bsp, 0x1000);
    expect(next(bsp).kind).toBe("hlt");
    expect(outByte(next(ap))).toBe(0x22);
    expect(outByte(next(ap))).toBe(0x22);
  });

  it("the backend's invalidateCode drops what every vCPU decoded from a range the host wrote", () => {
    const { backend, bsp, ap, put } = setup();
    // vCPU 0 runs the same code too: both have blocks decoded from byte 0x3001
    realModeAt(bsp, 0x3000);
    for (let i = 0; i < 64; i++) expect(outByte(next(bsp))).toBe(0x11);
    const pages = [bsp, ap].map((v) => (v.lp.cpu as Interpreter).codePages);
    if ((ap.lp.cpu as Interpreter).decodeCache) {
      for (const p of pages) expect(p.get(0x3000)?.covers(1, 1)).toBe(true);
    }
    put(0x3001, [0x33]);
    backend.invalidateCode(0x3001, 1);
    for (const p of pages) expect(p.get(0x3000)?.covers(1, 1) ?? false).toBe(false);
    expect(outByte(next(ap))).toBe(0x33);
    expect(outByte(next(bsp))).toBe(0x33);
  });
});

describe("snapshot of a soft vCPU", () => {
  it("keeps the wait-for-SIPI state and a pending SIPI", () => {
    const a = machine(2);
    a.put(0xb000, [0xb0, 0x53, 0xe6, 0xe9, 0xf4]); // mov al, 'S'; out 0xe9, al; hlt
    a.cpus[1]!.signal("sipi", 0x0b);
    a.cpus[1]!.signal("nmi");
    const saved = captureVcpu(new Vcpu(a.cpus[1]!, a.backend.memory));
    expect(saved.soft?.vmcs.GUEST_ACTIVITY_STATE).toBe(3n);
    expect(saved.soft?.pending).toEqual({ nmi: true, init: false, sipiVector: 0x0b });

    const b = machine(2);
    b.put(0xb000, [0xb0, 0x53, 0xe6, 0xe9, 0xf4]);
    const notes: string[] = [];
    applyVcpu(new Vcpu(b.cpus[1]!, b.backend.memory), saved, notes);
    expect(b.cpus[1]!.lp.nmiPending).toBe(true);
    expect(b.cpus[1]!.runnable()).toBe(true);
    // the SIPI starts it; the NMI, blocked while it waited, is then taken through IVT[2] (zero
    // here: 0000:0000, an ADD at address 0) — so only check the SIPI started it at 0xB000
    b.cpus[1]!.lp.nmiPending = false;
    expect(outByte(next(b.cpus[1]!))).toBe(0x53);
  });
});

it("createSoftBackend checks the vCPU count", () => {
  expect(() => createSoftBackend({ memoryBytes: MEM, vcpus: 0 })).toThrow(RangeError);
});
