// INS and OUTS whose memory operand the guest's own paging does not map (issue 13; a known fuzz
// bug until now: the soft backend ended the run as an internal error). The I/O exit comes before
// the processor touches the operand (SDM Vol. 3C 26.1.1), so the soft hypervisor, which performs
// the access, delivers the #PF the access raises, with CR2 and the error code, as KVM's emulator
// does; the registers and the port are left as they were.

import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/index.js";

const ENTRY = 0x100000;
const IDT = 0x3000;
const HANDLER = 0x4000;
const STACK = 0x8000;
/** the flat loader's identity map covers 4 GiB: this is past it */
const UNMAPPED = 0x1_0000_0000n;

const le = (v: bigint, n: number) =>
  Array.from({ length: n }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));

/**
 * Runs `code` (64-bit, at ENTRY) with a #PF handler that pops the error code into RAX, reads CR2
 * into RBX and halts; returns the registers, the faulting RIP from the frame, and the port writes.
 */
async function run(code: number[]) {
  const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
  try {
    vm.loadFlat(Uint8Array.from([...code, 0xf4]), { address: ENTRY, mode: "long" });
    const cpu = vm.vcpu(0);
    const cs = cpu.getSregs().cs.selector;
    // 64-bit interrupt gate for vector 14: offset 15:0, selector, type 0xE present, offset 31:16
    const gate = [
      ...le(BigInt(HANDLER & 0xffff), 2),
      ...le(BigInt(cs), 2),
      0,
      0x8e,
      ...le(BigInt(HANDLER >>> 16), 2),
    ];
    vm.memory.write(IDT + 14 * 16, Uint8Array.from([...gate, 0, 0, 0, 0, 0, 0, 0, 0]));
    // pop rax; mov rbx, cr2; hlt
    vm.memory.write(HANDLER, Uint8Array.from([0x58, 0x0f, 0x20, 0xd3, 0xf4]));
    cpu.setSregs({ idt: { base: BigInt(IDT), limit: 0xfff } });
    cpu.setRegs({ ...cpu.getRegs(), rsp: BigInt(STACK) });
    const out: number[] = [];
    vm.io.onOut(0x80, (_port, _size, value) => out.push(value));
    vm.io.onIn(0x80, () => 0x5a);
    const result = await vm.run({ timeoutMs: 10_000 });
    const regs = cpu.getRegs();
    const frame = new DataView(vm.memory.read(Number(regs.rsp), 8).slice().buffer).getBigUint64(0, true);
    return { reason: result.reason, regs, faultRip: frame, out };
  } finally {
    vm.close();
  }
}

describe("string I/O on a linear address the guest does not map", () => {
  it("INSB: #PF with error code W (not present, supervisor), CR2 the address, RDI unchanged", async () => {
    // mov rdi, UNMAPPED; mov dx, 0x80; insb
    const code = [0x48, 0xbf, ...le(UNMAPPED, 8), 0x66, 0xba, 0x80, 0x00, 0x6c];
    const r = await run(code);
    expect(r.reason).toBe("hlt");
    expect(r.regs.rax).toBe(2n);
    expect(r.regs.rbx).toBe(UNMAPPED);
    expect(r.faultRip).toBe(BigInt(ENTRY + 14));
    expect(r.regs.rdi).toBe(UNMAPPED);
  });

  it("REP OUTSB: #PF with error code 0, nothing reaches the port, RCX unchanged", async () => {
    // mov rsi, UNMAPPED + 0x10; mov ecx, 3; mov dx, 0x80; rep outsb
    const code = [
      0x48,
      0xbe,
      ...le(UNMAPPED + 0x10n, 8),
      0xb9,
      3,
      0,
      0,
      0,
      0x66,
      0xba,
      0x80,
      0x00,
      0xf3,
      0x6e,
    ];
    const r = await run(code);
    expect(r.reason).toBe("hlt");
    expect(r.regs.rax).toBe(0n);
    expect(r.regs.rbx).toBe(UNMAPPED + 0x10n);
    expect(r.faultRip).toBe(BigInt(ENTRY + 19));
    expect(r.regs.rcx).toBe(3n);
    expect(r.out).toEqual([]);
  });

  it("a mapped operand still works: INSB stores the port's byte", async () => {
    // mov edi, 0x5000; mov dx, 0x80; insb; mov al, [0x5000]
    const code = [0xbf, 0x00, 0x50, 0, 0, 0x66, 0xba, 0x80, 0x00, 0x6c, 0x8a, 0x04, 0x25, 0x00, 0x50, 0, 0];
    const r = await run(code);
    expect(r.reason).toBe("hlt");
    expect(r.regs.rax & 0xffn).toBe(0x5an);
    expect(r.regs.rdi).toBe(0x5001n);
  });
});
