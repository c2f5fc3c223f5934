import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import type { VcpuBackend } from "../../lib/vmm/backend.js";
import { createSoftBackend } from "../../lib/vmm/backends/soft.js";

function realModeAt(vcpu: VcpuBackend, rip: number): void {
  const s = vcpu.getSregs();
  for (const seg of [s.cs, s.ds, s.es, s.ss, s.fs, s.gs]) {
    seg.selector = 0;
    seg.base = 0n;
  }
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = BigInt(rip);
  r.rsp = 0x8000n;
  vcpu.setRegs(r);
}

function boot(code: number[], at = 0x1000) {
  const backend = createSoftBackend({ memoryBytes: 1 << 20 });
  backend.memory.write(at, Uint8Array.from(code));
  const vcpu = backend.createVcpu(0);
  realModeAt(vcpu, at);
  return { backend, vcpu };
}

const soft = (e: VmExit) => e.raw as Extract<VmExit["raw"], { backend: "soft" }>;

describe("soft backend: real-mode guests", () => {
  it("port output, port input, CPUID and HLT", () => {
    const { vcpu, backend } = boot([
      0xb0,
      0x41, // mov al, 'A'
      0xe6,
      0xe9, // out 0xe9, al
      0xba,
      0xf8,
      0x03, // mov dx, 0x3f8
      0xec, // in al, dx
      0xa2,
      0x00,
      0x20, // mov [0x2000], al
      0x66,
      0x31,
      0xc0, // xor eax, eax
      0x0f,
      0xa2, // cpuid
      0xf4, // hlt
    ]);
    const out = vcpu.run();
    expect(out).toMatchObject({ kind: "io", direction: "out", port: 0xe9, size: 1 });
    if (out.kind !== "io") throw new Error();
    expect(out.data[0]).toBe(0x41);
    expect(soft(out)).toMatchObject({
      reason: 30,
      instructionLength: 2,
      qualification: BigInt((0xe9 << 16) | 0x40),
    });
    const inp = vcpu.run();
    expect(inp).toMatchObject({ kind: "io", direction: "in", port: 0x3f8, size: 1 });
    if (inp.kind !== "io") throw new Error();
    inp.data[0] = 0x5a;
    const hlt = vcpu.run();
    expect(hlt.kind).toBe("hlt");
    expect(soft(hlt).reason).toBe(12);
    const regs = vcpu.getRegs();
    expect(backend.memory.readU8(0x2000)).toBe(0x5a);
    // CPUID leaf 0 answered by the backend: "GenuineIntel"
    expect(regs.rbx >> 8n).toBe(0x756e6547n >> 8n);
    expect(regs.rip).toBe(0x1000n + 17n);
  });

  it("an invalid guest state from setSregs is a fail-entry exit carrying reason 33 with bit 31", () => {
    const { vcpu } = boot([0xf4]);
    const s = vcpu.getSregs();
    s.cs.type = 1; // not a code segment
    vcpu.setSregs(s);
    const e = vcpu.run();
    expect(e).toMatchObject({ kind: "fail-entry", reason: 0x80000021 });
    expect(soft(e)).toMatchObject({ reason: 33, exitReasonField: 0x80000021 });
  });

  it("register inspection reads the VMCS guest-state area with the KVM field names", () => {
    const { vcpu } = boot([0xf4]);
    const regs = vcpu.getRegs();
    expect(Object.keys(regs).sort()).toEqual(
      [
        "rax",
        "rbx",
        "rcx",
        "rdx",
        "rsi",
        "rdi",
        "rsp",
        "rbp",
        "r8",
        "r9",
        "r10",
        "r11",
        "r12",
        "r13",
        "r14",
        "r15",
        "rip",
        "rflags",
      ].sort(),
    );
    regs.rbx = 0x1234n;
    regs.rflags = 0x202n;
    vcpu.setRegs(regs);
    expect(vcpu.getRegs()).toMatchObject({ rbx: 0x1234n, rip: 0x1000n, rsp: 0x8000n, rflags: 0x202n });
    const s = vcpu.getSregs();
    expect(s.cr0).toBe(0x60000010n); // the guest's view: NE is the host's, read through the shadow
    expect(s.cs).toMatchObject({ selector: 0, base: 0n, limit: 0xffff, type: 11, present: true, s: true });
    expect(vcpu.getMsr(0x480)).toBeUndefined(); // VMX is hidden from the guest
  });
});
