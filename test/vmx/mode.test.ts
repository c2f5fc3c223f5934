// Which mode this vitest project runs the VMX and soft-backend suites in (vitest.config.ts): the
// "blocks" project with the block cache and compiled blocks, "single-step" one instruction at a
// time. A setup that silently failed to take effect would run the same mode twice and prove nothing.
import { describe, expect, it } from "vitest";
import { COMPILE_THRESHOLD } from "../../lib/cpu/block-compile.js";
import { Interpreter } from "../../lib/cpu/index.js";
import { createSoftBackend, type SoftVcpu } from "../../lib/vmm/backends/soft.js";

const singleStep = process.env.NODEVMM_SINGLE_STEP === "1";

/** blocks of the interpreter that were compiled to JavaScript functions */
function compiledBlocks(cpu: Interpreter): number {
  let n = 0;
  for (const page of cpu.codePages.values()) for (const b of page.blocks.values()) if (b.compiled) n++;
  return n;
}

describe(`this project runs ${singleStep ? "single-stepped" : "with compiled blocks"}`, () => {
  it("new interpreters start with the block cache as the project says", () => {
    expect(Interpreter.defaultDecodeCache).toBe(!singleStep);
    expect(new Interpreter().decodeCache).toBe(!singleStep);
    // the blocks project compiles early (test/support/early-compile.ts); users get COMPILE_THRESHOLD
    expect(new Interpreter().jitThreshold).toBe(singleStep ? COMPILE_THRESHOLD : 16);
  });

  it("the soft backend's vCPU runs a loop through compiled blocks only in the blocks project", () => {
    const backend = createSoftBackend({ memoryBytes: 1 << 20 });
    // mov cx, 1000 ; L: add ax, cx ; xor bx, ax ; dec cx ; jnz L ; hlt
    backend.memory.write(
      0x1000,
      Uint8Array.of(0xb9, 0xe8, 0x03, 0x01, 0xc8, 0x31, 0xc3, 0x49, 0x75, 0xf9, 0xf4),
    );
    const vcpu = backend.createVcpu(0) as SoftVcpu;
    const s = vcpu.getSregs();
    for (const seg of [s.cs, s.ds, s.es, s.ss, s.fs, s.gs]) {
      seg.selector = 0;
      seg.base = 0n;
    }
    vcpu.setSregs(s);
    const r = vcpu.getRegs();
    r.rip = 0x1000n;
    vcpu.setRegs(r);
    let exit = vcpu.run();
    while (exit.kind === "intr") exit = vcpu.run();
    expect(exit.kind).toBe("hlt");
    // sum of 1..1000 in AX
    expect(vcpu.getRegs().rax & 0xffffn).toBe(500500n & 0xffffn);
    const cpu = vcpu.lp.cpu as Interpreter;
    expect(cpu.decodeCache).toBe(!singleStep);
    if (singleStep) expect(cpu.codePages.size).toBe(0);
    else expect(compiledBlocks(cpu)).toBeGreaterThan(0);
  });
});
