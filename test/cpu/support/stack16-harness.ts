// The interpreter set up as the host-CPU oracle runs its 16-bit-segment cases: protected mode at
// CPL 3 without paging, the 64-bit process's selectors (CS 0x23 for 32-bit code, DS/ES/SS 0x2b flat)
// in a GDT, and the helper's LDT (test/cpu/oracle/oracle.h): a 16-bit code segment based at
// CODE_ADDR (selector 0x0F) and a 16-bit stack segment of 64 KiB at STACK16_ADDR (selector 0x07).
// The scratch bytes of a `stack16` case are that segment's two ends, as the oracle reads them.

import { Seg } from "../../../lib/cpu/guest-cpu.js";
import { StopReason } from "../../../lib/cpu/hooks.js";
import { Interpreter } from "../../../lib/cpu/index.js";
import { StopOnEventHooks } from "./interp-harness.js";
import {
  CODE_ADDR,
  type CpuState,
  type OracleCase,
  SCRATCH_ADDR,
  SCRATCH_SIZE,
  SEL_CODE16,
  SEL_STACK16,
  STACK16_ADDR,
} from "./oracle.js";

const RAM_SIZE = 4 << 20;
const GDT = 0x1000;
const LDT = 0x2000;
const SEL_LDT = 0x30;
const SEL_CODE32 = 0x23;
const SEL_DATA32 = 0x2b;

export interface Stack16Result {
  vector: number;
  /** rip is linear, as the oracle reports it */
  state: CpuState;
}

function desc(ram: DataView, at: number, base: number, limit: number, access: number, flags: number): void {
  ram.setUint32(at, ((limit & 0xffff) | ((base & 0xffff) << 16)) >>> 0, true);
  ram.setUint32(
    at + 4,
    (((base >>> 16) & 0xff) | (access << 8) | (limit & 0xf0000) | (flags << 20) | (base & 0xff000000)) >>> 0,
    true,
  );
}

export class Stack16Harness {
  readonly ram = new Uint8Array(RAM_SIZE);
  readonly hooks = new StopOnEventHooks(this.ram);
  readonly cpu = new Interpreter();

  constructor() {
    const v = new DataView(this.ram.buffer);
    desc(v, GDT + SEL_CODE32 - 3, 0, 0xfffff, 0xfb, 0xc);
    desc(v, GDT + SEL_DATA32 - 3, 0, 0xfffff, 0xf3, 0xc);
    desc(v, GDT + SEL_LDT, LDT, 0xf, 0x82, 0);
    desc(v, LDT + (SEL_STACK16 & ~7), STACK16_ADDR, 0xffff, 0xf3, 0);
    desc(v, LDT + (SEL_CODE16 & ~7), CODE_ADDR, 0xffff, 0xfb, 0);
    const cpu = this.cpu;
    cpu.hooks = this.hooks;
    cpu.setGdtr({ base: BigInt(GDT), limit: 0x37 });
    cpu.setIdtr({ base: 0n, limit: 0 });
    cpu.setSegment(Seg.LDTR, { selector: SEL_LDT, base: BigInt(LDT), limit: 0xf, ar: 0x82 });
    cpu.setSegment(Seg.TR, { selector: 0, base: 0n, limit: 0x67, ar: 0x8b });
    cpu.setControl("cr4", 0x600n);
    cpu.setControl("cr0", 0x33n);
  }

  run(c: OracleCase): Stack16Result {
    const { cpu, ram } = this;
    const bits = c.bits ?? 64;
    if (bits === 64) throw new RangeError("Stack16Harness runs 16- and 32-bit code only");
    ram.fill(0xcc, CODE_ADDR, CODE_ADDR + 4096);
    ram.set(c.code, CODE_ADDR);
    cpu.invalidateCode(CODE_ADDR, 4096);
    ram.set(c.state.scratch, SCRATCH_ADDR);
    if (c.stack16) {
      ram.fill(0, STACK16_ADDR, STACK16_ADDR + 0x10000);
      ram.set(c.state.scratch.subarray(0, 512), STACK16_ADDR + 0xfe00);
      ram.set(c.state.scratch.subarray(512, 1024), STACK16_ADDR);
    }
    const flat = { base: 0n, limit: 0xffffffff };
    if (bits === 16)
      cpu.setSegment(Seg.CS, { selector: SEL_CODE16, base: BigInt(CODE_ADDR), limit: 0xffff, ar: 0xfb });
    else cpu.setSegment(Seg.CS, { selector: SEL_CODE32, ...flat, ar: 0xc0fb });
    for (const s of [Seg.DS, Seg.ES]) cpu.setSegment(s, { selector: SEL_DATA32, ...flat, ar: 0xc0f3 });
    for (const s of [Seg.FS, Seg.GS]) cpu.setSegment(s, { selector: 0, base: 0n, limit: 0, ar: 0x10000 });
    if (c.stack16)
      cpu.setSegment(Seg.SS, { selector: SEL_STACK16, base: BigInt(STACK16_ADDR), limit: 0xffff, ar: 0xf3 });
    else cpu.setSegment(Seg.SS, { selector: SEL_DATA32, ...flat, ar: 0xc0f3 });
    for (let r = 0; r < 8; r++) cpu.setGpr(r, c.state.gpr[r]! & 0xffffffffn);
    cpu.setRflags(c.state.rflags);
    const csBase = bits === 16 ? CODE_ADDR : 0;
    cpu.setRip(BigInt(CODE_ADDR - csBase));
    this.hooks.vector = -1;
    const end = CODE_ADDR + c.code.length;
    for (let steps = 0; steps < 1000 && this.hooks.vector < 0; steps++) {
      if (
        csBase + Number(cpu.getRip()) === end &&
        cpu.getSegment(Seg.CS).selector === (bits === 16 ? SEL_CODE16 : SEL_CODE32)
      )
        break;
      const stop = cpu.run(1);
      if (stop === StopReason.Exit || stop === StopReason.Shutdown) break;
    }
    const gpr: bigint[] = [];
    for (let r = 0; r < 16; r++) gpr.push(cpu.getGpr(r));
    const scratch = c.stack16
      ? Uint8Array.from([
          ...ram.subarray(STACK16_ADDR + 0xfe00, STACK16_ADDR + 0x10000),
          ...ram.subarray(STACK16_ADDR, STACK16_ADDR + 512),
        ])
      : ram.slice(SCRATCH_ADDR, SCRATCH_ADDR + SCRATCH_SIZE);
    return {
      vector: this.hooks.vector,
      state: {
        gpr,
        rflags: cpu.getRflags(),
        rip: BigInt(Number(cpu.getSegment(Seg.CS).base) + Number(cpu.getRip())),
        xmm: new Uint8Array(256),
        scratch,
      },
    };
  }
}
