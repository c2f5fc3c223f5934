// FSGSBASE, RDPID and PKU on the interpreter beside the host CPU (the differential oracle, user code
// in 64-bit mode), where the host runs them (FSGSBASE and PKU need the kernel's CR4 bits). Where it
// does not, their cases skip and say why.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { arbState, compareRuns, type DiffCase } from "./support/diff-cases.js";
import { InterpHarness } from "./support/interp-harness.js";
import { oracleUnsupportedReason, runOracle } from "./support/oracle.js";
import { hexBytes, type Insn, plainInsn } from "./support/x86-encode.js";

const FSGSBASE = 0x10000;
const PKE = 0x400000;

const oracle = oracleUnsupportedReason();

/**
 * Why the host cannot check the cases of an instruction, or undefined. /proc/cpuinfo's flags are
 * not the whole answer (a hypervisor may hide a CPUID bit of an instruction the CPU still runs, or
 * the kernel may leave a CR4 bit clear), so the host runs `probe` once: #UD means it cannot.
 */
function missing(flag: string, probe: number[], regs: Record<number, bigint> = {}): string | undefined {
  if (oracle !== undefined) return oracle;
  const [base] = fc.sample(arbState, { seed: 7, numRuns: 1 });
  const gpr = [...base!.gpr];
  for (const [r, v] of Object.entries(regs)) gpr[Number(r)] = v;
  const [r] = runOracle([{ code: Uint8Array.from(probe), state: { ...base!, gpr }, bits: 64 }]);
  if (r!.vector === 6) return `the host raises #UD for it (${flag} is not offered to user code)`;
  return undefined;
}

const insn = (hex: string, text: string): Insn => plainInsn({ bytes: hexBytes(hex), text });

/** differences between the interpreter (with `cr4` bits added) and the host on `insns` */
function diff(insns: Insn[], regs: Record<number, bigint>, cr4: number): string[] {
  const [base] = fc.sample(arbState, { seed: 7, numRuns: 1 });
  const gpr = [...base!.gpr];
  for (const [r, v] of Object.entries(regs)) gpr[Number(r)] = v;
  const c: DiffCase = { insns, state: { ...base!, gpr } };
  const harness = new InterpHarness(new Interpreter(), 64);
  harness.cpu.setControl("cr4", harness.cpu.getControl("cr4") | BigInt(cr4));
  const code = Uint8Array.from(insns.flatMap((i) => i.bytes));
  const [expected] = runOracle([{ code, state: c.state, bits: 64 }]);
  return compareRuns(harness.run(c.insns, c.state), expected!, 64);
}

describe("FSGSBASE, RDPID and PKU beside the host CPU", () => {
  const noFsgs = missing("fsgsbase", [0xf3, 0x48, 0x0f, 0xae, 0xcb]);
  it.skipIf(noFsgs !== undefined)(
    `WRGSBASE then RDGSBASE, and #GP(0) for a non-canonical base${noFsgs ? ` (skipped: ${noFsgs})` : ""}`,
    () => {
      const pair = [insn("f3480faed8", "wrgsbase rax"), insn("f3480faecb", "rdgsbase rbx")];
      expect(diff(pair, { 0: 0x7f0012345000n }, FSGSBASE)).toEqual([]);
      expect(diff(pair, { 0: 0x800000000000n }, FSGSBASE)).toEqual([]);
      // the host process's GS base goes back to 0, where user code leaves it
      expect(diff(pair, { 0: 0n }, FSGSBASE)).toEqual([]);
    },
  );

  const noRdpid = missing("rdpid", [0xf3, 0x0f, 0xc7, 0xf8]);
  it.skipIf(noRdpid !== undefined)(
    `RDPID runs and zero-extends into the 64-bit register${noRdpid ? ` (skipped: ${noRdpid})` : ""}`,
    () => {
      // IA32_TSC_AUX is the host CPU's number there and 0 here: compare what does not depend on it
      const [base] = fc.sample(arbState, { seed: 7, numRuns: 1 });
      const gpr = [...base!.gpr];
      gpr[0] = -1n;
      const [host] = runOracle([
        { code: Uint8Array.of(0xf3, 0x0f, 0xc7, 0xf8), state: { ...base!, gpr }, bits: 64 },
      ]);
      expect(host!.vector).toBe(-1);
      expect(host!.state.gpr[0]! >> 32n).toBe(0n);
    },
  );

  const noPku = missing("pku/ospke", [0x0f, 0x01, 0xee], { 1: 0n });
  it.skipIf(noPku !== undefined)(
    `WRPKRU then RDPKRU; #GP(0) for ECX != 0${noPku ? ` (skipped: ${noPku})` : ""}`,
    () => {
      const pair = [insn("0f01ef", "wrpkru"), insn("0f01ee", "rdpkru")];
      // Linux's default PKRU (key 0 open, the others access-disabled): the host process keeps it
      expect(diff(pair, { 0: 0x55555554n, 1: 0n, 2: 0n }, PKE)).toEqual([]);
      expect(diff(pair, { 0: 0x55555554n, 1: 1n, 2: 0n }, PKE)).toEqual([]);
      expect(diff(pair, { 0: 0x55555554n, 1: 0n, 2: 1n }, PKE)).toEqual([]);
    },
  );
});
