import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { type Segment, segment } from "../../lib/types/regs.js";
import type { InterruptController } from "../../lib/vmm/backend.js";
import { createSoftBackend, type SoftVcpu } from "../../lib/vmm/backends/soft.js";

const flat = (code: boolean, long = false): Segment =>
  segment({ limit: 0xffffffff, type: code ? 11 : 3, db: !long, l: long && code, g: true });

/** An interrupt controller with one line: while `line.pending`, vector 0x20 waits to be taken. */
function oneLinePic(pending: boolean) {
  const line = { pending };
  const pic: InterruptController = {
    setIrq: () => {},
    hasInterrupt: () => line.pending,
    acknowledge: () => {
      line.pending = false;
      return 0x20;
    },
  };
  return { pic, line };
}

function machine(code: number[], mode: "real" | "protected" | "long", pic?: InterruptController) {
  const backend = createSoftBackend({ memoryBytes: 4 << 20, ...(pic ? { interruptController: pic } : {}) });
  const mem = backend.memory;
  mem.write(0x1000, Uint8Array.from(code));
  const vcpu = backend.createVcpu(0) as SoftVcpu;
  const s = vcpu.getSregs();
  if (mode === "real") {
    for (const seg of [s.cs, s.ds, s.es, s.ss, s.fs, s.gs]) {
      seg.selector = 0;
      seg.base = 0n;
    }
  } else {
    const long = mode === "long";
    s.cs = { ...flat(true, long), selector: 8 };
    for (const k of ["ds", "es", "ss", "fs", "gs"] as const) s[k] = { ...flat(false), selector: 0x10 };
    s.tr = { ...s.tr, type: 11, present: true, s: false };
    s.cr0 = 0x11n;
    if (long) {
      // identity map of the first 1 GiB with 2-MiB pages
      mem.writeU64(0x10000, 0x11000n | 3n);
      mem.writeU64(0x11000, 0x12000n | 3n);
      for (let i = 0; i < 512; i++) mem.writeU64(0x12000 + i * 8, (BigInt(i) * 0x200000n) | 0x83n);
      s.cr3 = 0x10000n;
      s.cr4 = 0x20n;
      s.cr0 = 0x80000011n;
      s.efer = 0x500n;
    }
  }
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = 0x1000n;
  r.rsp = 0x8000n;
  vcpu.setRegs(r);
  return { backend, vcpu, mem };
}

const expectKind = <K extends VmExit["kind"]>(e: VmExit, kind: K): Extract<VmExit, { kind: K }> => {
  expect(e.kind).toBe(kind);
  return e as Extract<VmExit, { kind: K }>;
};

describe("soft backend guests", () => {
  it("protected mode: MMIO write and read through EPT violations", () => {
    const { vcpu } = machine(
      [
        0xb8,
        0x78,
        0x56,
        0x34,
        0x12, // mov eax, 0x12345678
        0xa3,
        0x00,
        0x00,
        0x00,
        0xd0, // mov [0xd0000000], eax
        0x8b,
        0x1d,
        0x04,
        0x00,
        0x00,
        0xd0, // mov ebx, [0xd0000004]
        0xf4, // hlt
      ],
      "protected",
    );
    const w = expectKind(vcpu.run(), "mmio");
    expect(w).toMatchObject({ address: 0xd0000000, length: 4, write: true });
    expect([...w.data]).toEqual([0x78, 0x56, 0x34, 0x12]);
    expect(w.raw).toMatchObject({ backend: "soft", reason: 48 });
    const r = expectKind(vcpu.run(), "mmio");
    expect(r).toMatchObject({ address: 0xd0000004, length: 4, write: false });
    r.data.set([1, 2, 3, 4]);
    expectKind(vcpu.run(), "hlt");
    expect(vcpu.getRegs().rbx).toBe(0x04030201n);
  });

  it("long mode: 64-bit port output, 8-byte MMIO write and a hypercall", () => {
    const { vcpu } = machine(
      [
        0x48,
        0xb8,
        0x88,
        0x77,
        0x66,
        0x55,
        0x44,
        0x33,
        0x22,
        0x11, // mov rax, 0x1122334455667788
        0x48,
        0xa3,
        0x00,
        0x00,
        0x00,
        0x30,
        0x00,
        0x00,
        0x00,
        0x00, // mov [0x30000000], rax
        0xe6,
        0xe9, // out 0xe9, al
        0x0f,
        0x01,
        0xc1, // vmcall
        0xf4, // hlt
      ],
      "long",
    );
    const w = expectKind(vcpu.run(), "mmio");
    expect(w).toMatchObject({ address: 0x30000000, length: 8, write: true });
    expect([...w.data]).toEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    const out = expectKind(vcpu.run(), "io");
    expect(out.data[0]).toBe(0x88);
    const call = expectKind(vcpu.run(), "hypercall");
    expect(call.nr).toBe(0x1122334455667788n);
    call.ret = 42n;
    expectKind(vcpu.run(), "hlt");
    expect(vcpu.getRegs().rax).toBe(42n);
    expect(vcpu.getSregs().efer & 0x500n).toBe(0x500n);
    expect(vcpu.getSregs().cs.l).toBe(true);
  });

  it("interrupt injection: a pending PIC interrupt is delivered through the IVT once the guest enables interrupts", () => {
    const { pic, line } = oneLinePic(false);
    const { vcpu, mem } = machine(
      [
        0xfb, // sti
        0xf4, // hlt
        0xb0,
        0x55, // mov al, 0x55
        0xe6,
        0xe9, // out 0xe9, al
        0xf4,
      ],
      "real",
      pic,
    );
    mem.writeU16(0x20 * 4, 0x3000);
    mem.writeU16(0x20 * 4 + 2, 0);
    mem.write(0x3000, Uint8Array.from([0xb0, 0x99, 0xe6, 0xe9, 0xcf])); // mov al,0x99; out 0xe9,al; iret
    expectKind(vcpu.run(), "hlt");
    line.pending = true;
    const inHandler = expectKind(vcpu.run(), "io");
    expect(inHandler.data[0]).toBe(0x99);
    const after = expectKind(vcpu.run(), "io");
    expect(after.data[0]).toBe(0x55);
    expect(line.pending).toBe(false);
  });

  it("an interrupt that arrives while IF=0 waits for an interrupt window", () => {
    const { pic } = oneLinePic(true);
    const { vcpu, mem } = machine(
      [
        0xb0,
        0x01,
        0xe6,
        0xe9, // mov al,1; out 0xe9,al   (IF=0: not delivered)
        0xfb, // sti
        0x90, // nop (STI shadow)
        0xb0,
        0x02,
        0xe6,
        0xe9, // mov al,2; out 0xe9,al
        0xf4,
      ],
      "real",
      pic,
    );
    mem.writeU16(0x20 * 4, 0x3000);
    mem.write(0x3000, Uint8Array.from([0xb0, 0x99, 0xe6, 0xe9, 0xcf]));
    expect(expectKind(vcpu.run(), "io").data[0]).toBe(1);
    expect(expectKind(vcpu.run(), "io").data[0]).toBe(0x99);
    expect(expectKind(vcpu.run(), "io").data[0]).toBe(2);
  });

  it("string I/O: REP OUTSB and REP INSW move the buffer in one exit each", () => {
    const { vcpu, mem } = machine(
      [
        0xbe,
        0x00,
        0x20, // mov si, 0x2000
        0xb9,
        0x05,
        0x00, // mov cx, 5
        0xba,
        0xe9,
        0x00, // mov dx, 0xe9
        0xfc, // cld
        0xf3,
        0x6e, // rep outsb
        0xbf,
        0x00,
        0x30, // mov di, 0x3000
        0xb9,
        0x02,
        0x00, // mov cx, 2
        0xf3,
        0x6d, // rep insw
        0xf4, // hlt
      ],
      "real",
    );
    mem.write(0x2000, new TextEncoder().encode("hello"));
    const out = expectKind(vcpu.run(), "io");
    expect(out).toMatchObject({ direction: "out", port: 0xe9, size: 1, count: 5 });
    expect(new TextDecoder().decode(out.data)).toBe("hello");
    expect(out.raw).toMatchObject({ reason: 30, qualification: BigInt((0xe9 << 16) | 0x20 | 0x10) });
    const inp = expectKind(vcpu.run(), "io");
    expect(inp).toMatchObject({ direction: "in", size: 2, count: 2 });
    inp.data.set([1, 2, 3, 4]);
    expectKind(vcpu.run(), "hlt");
    expect([...mem.read(0x3000, 4)]).toEqual([1, 2, 3, 4]);
    const r = vcpu.getRegs();
    expect([r.rsi, r.rdi, r.rcx]).toEqual([0x2005n, 0x3004n, 0n]);
  });

  it("string I/O follows a segment override and the address size the exit reports", () => {
    // mov si, 0x10; mov cx, 3; rep fs outsb; hlt
    const { vcpu, mem } = machine([0xbe, 0x10, 0x00, 0xb9, 0x03, 0x00, 0xf3, 0x64, 0x6e, 0xf4], "real");
    const s = vcpu.getSregs();
    s.fs = { ...s.fs, selector: 0x3000, base: 0x30000n };
    vcpu.setSregs(s);
    mem.write(0x30010, new TextEncoder().encode("abc"));
    const out = expectKind(vcpu.run(), "io");
    expect(new TextDecoder().decode(out.data)).toBe("abc");
    expectKind(vcpu.run(), "hlt");
    expect(vcpu.getRegs().rsi).toBe(0x13n);
  });

  it("long mode: OUTSB with a 32-bit address-size prefix reads at ESI", () => {
    // mov rsi, 0x1_0000_2000 (ESI = 0x2000); a32 outsb; hlt
    const { vcpu, mem } = machine(
      [0x48, 0xbe, 0x00, 0x20, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xba, 0xe9, 0, 0, 0, 0x67, 0x6e, 0xf4],
      "long",
    );
    mem.write(0x2000, Uint8Array.of(0x5a));
    const out = expectKind(vcpu.run(), "io");
    expect([...out.data]).toEqual([0x5a]);
    expectKind(vcpu.run(), "hlt");
    expect(vcpu.getRegs().rsi).toBe(0x2001n);
  });

  it("a halted guest with interrupts disabled keeps reporting HLT without running", () => {
    const { vcpu } = machine([0xfa, 0xf4, 0xb0, 0x01, 0xe6, 0xe9], "real"); // cli; hlt; out
    expectKind(vcpu.run(), "hlt");
    const n = vcpu.instructionsRetired();
    expectKind(vcpu.run(), "hlt");
    expect(vcpu.instructionsRetired()).toBe(n);
  });

  it("VMX instructions raise #UD and VMX capability MSRs #GP in the guest; other MSRs pass through", () => {
    const handlers = (mem: {
      writeU16(a: number, v: number): void;
      write(a: number, d: Uint8Array): void;
    }) => {
      for (const [vector, at] of [
        [6, 0x3000],
        [13, 0x3100],
      ] as const) {
        mem.writeU16(vector * 4, at);
        mem.write(at, Uint8Array.from([0xb0, vector, 0xe6, 0xe9, 0xf4])); // mov al, vector; out 0xe9, al; hlt
      }
    };
    const ud = machine([0x0f, 0x01, 0xc2], "real"); // vmlaunch
    handlers(ud.mem);
    expect(expectKind(ud.vcpu.run(), "io").data[0]).toBe(6);
    const gp = machine([0x66, 0xb9, 0x80, 0x04, 0x00, 0x00, 0x0f, 0x32], "real"); // mov ecx, 0x480; rdmsr
    handlers(gp.mem);
    expect(expectKind(gp.vcpu.run(), "io").data[0]).toBe(13);
    const star = machine(
      [
        0x66,
        0xb9,
        0x81,
        0x00,
        0x00,
        0xc0, // mov ecx, 0xc0000081 (STAR)
        0x66,
        0xb8,
        0x44,
        0x33,
        0x22,
        0x11, // mov eax, 0x11223344
        0x66,
        0x31,
        0xd2, // xor edx, edx
        0x0f,
        0x30, // wrmsr
        0x66,
        0x31,
        0xc0, // xor eax, eax
        0x0f,
        0x32, // rdmsr
        0xf4,
      ],
      "real",
    );
    handlers(star.mem);
    expectKind(star.vcpu.run(), "hlt");
    expect(star.vcpu.getRegs().rax).toBe(0x11223344n);
    expect(star.vcpu.getMsr(0xc0000081)).toBe(0x11223344n);
  });

  it("time slices: an instruction budget ends run() with an intr exit (preemption timer, reason 52)", () => {
    const { vcpu } = machine([0x66, 0x40, 0xeb, 0xfc], "real"); // inc eax; jmp $-2
    vcpu.setInstructionBudget(1000);
    const e = expectKind(vcpu.run(), "intr");
    expect(e.raw).toMatchObject({ backend: "soft", reason: 52 });
    expect(vcpu.instructionsRetired()).toBeGreaterThanOrEqual(1000);
    expect(vcpu.instructionsRetired()).toBeLessThan(1000 + 32);
    vcpu.kick();
    vcpu.setInstructionBudget(undefined);
    const before = vcpu.instructionsRetired();
    expectKind(vcpu.run(), "intr");
    expect(vcpu.instructionsRetired()).toBe(before);
  });

  it("migration: VMCLEAR on one logical processor, VMPTRLD + VMLAUNCH on another, the guest continues exactly", () => {
    const code = [
      0xb9,
      0xf4,
      0x01, // mov cx, 500
      0x66,
      0x40, // inc eax
      0x66,
      0x01,
      0xc3, // add ebx, eax
      0x66,
      0x31,
      0xda, // xor edx, ebx
      0xe2,
      0xf6, // loop back to inc
      0xf4, // hlt
    ];
    const ref = machine(code, "real").vcpu;
    expectKind(ref.run(), "hlt");
    const moved = machine(code, "real").vcpu;
    const seen = new Set<unknown>();
    let exit: VmExit;
    for (;;) {
      moved.setInstructionBudget(300);
      exit = moved.run();
      if (exit.kind !== "intr") break;
      seen.add(moved.lp);
      moved.migrate();
    }
    expect(exit.kind).toBe("hlt");
    expect(seen.size).toBeGreaterThan(3);
    expect(moved.getRegs()).toEqual(ref.getRegs());
    expect(moved.getSregs()).toEqual(ref.getSregs());
  });

  it("migration carries the x87/SSE state, which is not in the VMCS", () => {
    const { vcpu } = machine([0xf4], "real");
    const state = vcpu.lp.cpu.getExtendedState();
    state.xmm.set([0x11111111, 0x22222222, 0x33333333, 0x44444444], 12);
    state.fpu[3] = 2.5;
    vcpu.lp.cpu.setExtendedState({ ...state, fpuTop: 5, fpuCw: 0x27f, mxcsr: 0x9fc0 });
    const before = vcpu.lp.cpu.getExtendedState();
    const old = vcpu.lp;
    vcpu.migrate();
    expect(vcpu.lp).not.toBe(old);
    expect(vcpu.lp.cpu.getExtendedState()).toEqual(before);
  });
});
