// Far CALL/JMP through a 64-bit call gate (IA-32e mode: 16-byte descriptor, 64-bit target code
// segment). A CALL to a more privileged non-conforming segment switches to RSPn of the 64-bit TSS
// with a null SS and pushes SS, RSP, CS and RIP as quadwords (64-bit gates copy no parameters);
// RETF with REX.W (farReturn) comes back. Everything is checked before anything changes.

import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";
import {
  type Descriptor,
  descAr,
  loadCs,
  nullSs,
  pushQuadwords,
  readDescriptor,
  sysRead,
  updateMode,
} from "./system.js";

const TWO32 = 4294967296;

const gp = (sel: number): CpuFault => new CpuFault(Vec.GP, sel & 0xfffc);
const canonical = (v: number): boolean => v < 0x800000000000 && v >= -0x800000000000;
/** a 64-bit value from two halves, signed (the interpreter's form of 64-bit linear addresses) */
const join = (lo: number, hi: number): number => (hi | 0) * TWO32 + (lo >>> 0);

export function callGate64(cpu: Interpreter, gateSel: number, g: Descriptor, call: boolean): void {
  const gar = descAr(g);
  const gdpl = (gar >> 5) & 3;
  if (gdpl < cpu.cpl || gdpl < (gateSel & 3)) throw gp(gateSel);
  if ((gar & 0x80) === 0) throw new CpuFault(Vec.NP, gateSel & 0xfffc);
  // the upper half must fit in the table and have a zero type field
  const tableLimit = (gateSel & 4) !== 0 ? cpu.segLimit[6] : cpu.gdtLimit;
  if ((gateSel & ~7) + 15 > tableLimit) throw gp(gateSel);
  const upperLo = sysRead(cpu, g.addr + 8, 4);
  const upperHi = sysRead(cpu, g.addr + 12, 4);
  if (((upperHi >>> 8) & 0x1f) !== 0) throw gp(gateSel);
  const sel = (g.lo >>> 16) & 0xffff;
  const target = join(((g.hi & 0xffff0000) | (g.lo & 0xffff)) >>> 0, upperLo);

  if ((sel & ~3) === 0) throw gp(0);
  const d = readDescriptor(cpu, sel);
  if (d === null) throw gp(sel);
  const ar = descAr(d);
  const dpl = (ar >> 5) & 3;
  const conforming = (ar & 4) !== 0;
  if ((ar & 0x18) !== 0x18 || dpl > cpu.cpl) throw gp(sel);
  if (!call && !conforming && dpl !== cpu.cpl) throw gp(sel);
  // the target must be a 64-bit code segment (L=1, D=0)
  if ((ar & 0x2000) === 0 || (ar & 0x4000) !== 0) throw gp(sel);
  if ((ar & 0x80) === 0) throw new CpuFault(Vec.NP, sel & 0xfffc);
  if (!canonical(target)) throw gp(0);

  const oldCs = cpu.segSel[1];
  const ret = cpu.ip;
  if (!call || conforming || dpl === cpu.cpl) {
    if (call) {
      // CS and RIP as quadwords on the current stack, checked at the current privilege
      const rsp = join(cpu.lo[4], cpu.hi[4]);
      const a1 = cpu.canon(rsp - 8, 2);
      const a2 = cpu.canon(rsp - 16, 2);
      cpu.probeWrite(a1, 8);
      cpu.probeWrite(a2, 8);
      cpu.wr(64, a1, oldCs, 0);
      cpu.wr(64, a2, ret >>> 0, Math.floor(ret / TWO32) | 0);
      const top = rsp - 16;
      cpu.lo[4] = top;
      cpu.hi[4] = Math.floor(top / TWO32);
    }
    loadCs(cpu, sel, d, cpu.cpl);
    updateMode(cpu);
    cpu.ip = target;
    return;
  }

  // more privilege: RSP for the target's DPL from the 64-bit TSS, SS becomes null
  const newCpl = dpl;
  const off = 4 + newCpl * 8;
  if (off + 7 > cpu.segLimit[7]) throw new CpuFault(Vec.TS, cpu.segSel[7] & 0xfffc);
  const trBase = cpu.segBase[7];
  const newRsp = join(sysRead(cpu, trBase + off, 4), sysRead(cpu, trBase + off + 4, 4));
  if (!canonical(newRsp)) throw new CpuFault(Vec.SS, 0);
  const top = pushQuadwords(cpu, newRsp, [cpu.segSel[2], join(cpu.lo[4], cpu.hi[4]), oldCs, ret]);
  loadCs(cpu, sel, d, newCpl);
  nullSs(cpu, newCpl);
  cpu.lo[4] = top;
  cpu.hi[4] = Math.floor(top / TWO32);
  updateMode(cpu);
  cpu.ip = target;
}
