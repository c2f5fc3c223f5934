// Hardware task switches on the bare interpreter (SDM Vol. 3A ch. 7): far CALL/JMP to a TSS or
// through a task gate, INT n and exceptions through IDT task gates (the double fault too), IRET
// with NT=1, busy bits, back-link, NT, CR0.TS, CR3, 16-bit TSSs, and the faults of the invalid cases.
import { describe, expect, it } from "vitest";
import { EventType, StopReason } from "../../lib/cpu/index.js";
import { CODE, GDT, type Guest, hex, IDT, loggedVector, makeGuest, r32, SEL, TSS } from "./guest.js";
import { PAGING_CASE, runTaskGuestBare, TASK_GUEST_BASE, TS_CASE } from "./task-switch-guest.js";

const NEW = 0x60; // selector of the incoming TSS
const NEW_TSS = 0x5000;
const TASK = 0x6000; // the incoming task's code
const TASK_STACK = 0x7800;

function w32(ram: Uint8Array, a: number, v: number): void {
  ram[a] = v;
  ram[a + 1] = v >> 8;
  ram[a + 2] = v >> 16;
  ram[a + 3] = v >> 24;
}
const w16 = (ram: Uint8Array, a: number, v: number) => {
  ram[a] = v;
  ram[a + 1] = v >> 8;
};
const r16 = (ram: Uint8Array, a: number) => ram[a] | (ram[a + 1] << 8);

/** a system descriptor (TSS: type 9/0xB/1/3; task gate: type 5 with `base` as the TSS selector) */
function sysDesc(
  g: Guest,
  sel: number,
  base: number,
  limit: number,
  type: number,
  dpl = 0,
  present = true,
): void {
  const a = GDT + (sel & ~7);
  w32(g.ram, a, (limit & 0xffff) | ((base & 0xffff) << 16));
  w32(
    g.ram,
    a + 4,
    ((base >>> 16) & 0xff) |
      ((type | (dpl << 5) | (present ? 0x80 : 0)) << 8) |
      (limit & 0xf0000) |
      (base & 0xff000000),
  );
}
const typeByte = (g: Guest, sel: number) => g.ram[GDT + (sel & ~7) + 5];

interface TaskImage {
  eip?: number;
  esp?: number;
  cs?: number;
  ss?: number;
  ds?: number;
  eflags?: number;
  eax?: number;
  ldt?: number;
  cr3?: number;
}
function tss32(g: Guest, base: number, t: TaskImage = {}): void {
  g.ram.fill(0, base, base + 0x68);
  w32(g.ram, base + 0x1c, t.cr3 ?? 0);
  w32(g.ram, base + 0x20, t.eip ?? TASK);
  w32(g.ram, base + 0x24, t.eflags ?? 2);
  w32(g.ram, base + 0x28, t.eax ?? 0xa5a5a5a5);
  w32(g.ram, base + 0x38, t.esp ?? TASK_STACK);
  for (const [off, v] of [
    [0x48, t.ds ?? SEL.data32],
    [0x4c, t.cs ?? SEL.code32],
    [0x50, t.ss ?? SEL.data32],
    [0x54, t.ds ?? SEL.data32],
    [0x58, t.ds ?? SEL.data32],
    [0x5c, t.ds ?? SEL.data32],
  ] as const)
    w16(g.ram, base + off, v);
  w16(g.ram, base + 0x60, t.ldt ?? 0);
}

/** a 32-bit protected-mode guest whose current task (TR 0x48) is busy in the GDT too */
function guest(code: number[], taskCode: number[] = hex("f4 cf")): Guest {
  const g = makeGuest("prot32", code);
  g.cpu.setGdtr({ base: BigInt(GDT), limit: 0xff });
  sysDesc(g, SEL.tss, TSS, 0x67, 0xb);
  sysDesc(g, NEW, NEW_TSS, 0x67, 0x9);
  tss32(g, NEW_TSS);
  g.ram.set(taskCode, TASK);
  return g;
}
const tr = (g: Guest) => g.cpu.getSegment(7).selector;
const flags = (g: Guest) => Number(g.cpu.getRflags());
const resume = (g: Guest) => {
  g.cpu.activity = 0;
  return g.run(1000);
};
/** the error code the exception handler stub left on its stack */
const errorCode = (g: Guest) => r32(g.ram, Number(g.cpu.getGpr(4)));

describe("task switches", () => {
  it("CALL to a TSS saves the old task, nests (NT, back-link, both busy, CR0.TS), IRET returns", () => {
    // mov esi, 0x11111111 ; call far NEW:0 ; hlt    task: hlt ; iret
    const g = guest(hex("be 11 11 11 11 9a 00 00 00 00 60 00 f4"));
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(NEW);
    expect(Number(g.cpu.getRip())).toBe(TASK + 1);
    expect(Number(g.cpu.getGpr(0))).toBe(0xa5a5a5a5);
    expect(Number(g.cpu.getGpr(4))).toBe(TASK_STACK);
    expect(Number(g.cpu.getGpr(6))).toBe(0);
    expect(flags(g) & 0x4000).toBe(0x4000);
    expect(Number(g.cpu.getControl("cr0")) & 8).toBe(8);
    expect(r16(g.ram, NEW_TSS)).toBe(SEL.tss);
    expect([typeByte(g, SEL.tss), typeByte(g, NEW)]).toEqual([0x8b, 0x8b]);
    // the outgoing task's dynamic state: EIP after the CALL, ESI, EFLAGS without NT
    expect(r32(g.ram, TSS + 0x20)).toBe(CODE + 12);
    expect(r32(g.ram, TSS + 0x40)).toBe(0x11111111);
    expect(r32(g.ram, TSS + 0x4c) & 0xffff).toBe(SEL.code32);

    expect(resume(g)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(SEL.tss);
    expect(Number(g.cpu.getRip())).toBe(CODE + 13);
    expect(Number(g.cpu.getGpr(6))).toBe(0x11111111);
    expect(flags(g) & 0x4000).toBe(0);
    // IRET frees the task it leaves; the incoming one stays busy
    expect([typeByte(g, SEL.tss), typeByte(g, NEW)]).toEqual([0x8b, 0x89]);
    // IRET saved the returning task with NT clear, its EIP after the IRET
    expect(r32(g.ram, NEW_TSS + 0x24) & 0x4000).toBe(0);
    expect(r32(g.ram, NEW_TSS + 0x20)).toBe(TASK + 2);
  });

  it("JMP through a GDT task gate does not nest and frees the old task", () => {
    // jmp far 0x70:0 (task gate -> NEW)
    const g = guest(hex("ea 00 00 00 00 70 00"));
    sysDesc(g, 0x70, NEW, 0, 0x5);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(NEW);
    expect(flags(g) & 0x4000).toBe(0);
    expect(r16(g.ram, NEW_TSS)).toBe(0);
    expect([typeByte(g, SEL.tss), typeByte(g, NEW)]).toEqual([0x89, 0x8b]);
    expect(r32(g.ram, TSS + 0x20)).toBe(CODE + 7);
  });

  it("INT n through an IDT task gate nests; an exception's error code lands on the new stack", () => {
    // int 0x40 ; hlt
    const g = guest(hex("cd 40 f4"));
    w32(g.ram, IDT + 0x40 * 8, NEW << 16);
    w32(g.ram, IDT + 0x40 * 8 + 4, 0x8500);
    g.cpu.setIdtr({ base: BigInt(IDT), limit: 0x41 * 8 - 1 });
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(NEW);
    expect(flags(g) & 0x4000).toBe(0x4000);
    expect(Number(g.cpu.getGpr(4))).toBe(TASK_STACK);
    expect(r32(g.ram, TSS + 0x20)).toBe(CODE + 2);
    expect(resume(g)).toBe(StopReason.Halted);
    expect(Number(g.cpu.getRip())).toBe(CODE + 3);

    // mov ax, 0x1233 ; mov ds, ax -> #GP(0x1230) through a task gate at vector 13
    const e = guest(hex("66 b8 33 12 8e d8 f4"));
    w32(e.ram, IDT + 13 * 8, NEW << 16);
    w32(e.ram, IDT + 13 * 8 + 4, 0x8500);
    expect(e.run(1000)).toBe(StopReason.Halted);
    expect(tr(e)).toBe(NEW);
    expect(Number(e.cpu.getGpr(4))).toBe(TASK_STACK - 4);
    expect(r32(e.ram, TASK_STACK - 4)).toBe(0x1230);
    // a fault: the old task resumes at the faulting instruction
    expect(r32(e.ram, TSS + 0x20)).toBe(CODE + 4);
  });

  it("an NMI through a task gate runs its task; the task's IRET returns and ends NMI blocking", () => {
    const g = guest(hex("f4 f4"));
    w32(g.ram, IDT + 2 * 8, NEW << 16);
    w32(g.ram, IDT + 2 * 8 + 4, 0x8500);
    expect(g.run(1000)).toBe(StopReason.Halted);
    // what the processor does for an NMI: deliver it and block further NMIs
    expect(g.cpu.deliverEvent(2, EventType.Nmi, undefined, 0)).toBeUndefined();
    g.cpu.interruptibility |= 8;
    expect(tr(g)).toBe(NEW);
    expect(r32(g.ram, TSS + 0x20)).toBe(CODE + 1);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(g.cpu.interruptibility & 8).toBe(8);
    expect(resume(g)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(SEL.tss);
    expect(Number(g.cpu.getRip())).toBe(CODE + 2);
    expect(g.cpu.interruptibility & 8).toBe(0);
  });

  it("a double fault through a task gate (the Linux-i386 case) runs the #DF task with error code 0", () => {
    // #GP whose gate is not present: #NP while delivering it, contributory twice: #DF
    const g = guest(hex("66 b8 33 12 8e d8 f4"));
    g.ram[IDT + 13 * 8 + 5] &= 0x7f;
    w32(g.ram, IDT + 8 * 8, NEW << 16);
    w32(g.ram, IDT + 8 * 8 + 4, 0x8500);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(NEW);
    expect(Number(g.cpu.getRip())).toBe(TASK + 1);
    expect(r32(g.ram, TASK_STACK - 4)).toBe(0);
    expect(r16(g.ram, NEW_TSS)).toBe(SEL.tss);
    expect(r32(g.ram, TSS + 0x20)).toBe(CODE + 4);
  });

  it("the incoming TSS is checked before anything changes: busy #GP, not present #NP, too small #TS", () => {
    const call = hex("9a 00 00 00 00 60 00 f4");
    const cases: [string, (g: Guest) => void, number][] = [
      ["busy", (g) => sysDesc(g, NEW, NEW_TSS, 0x67, 0xb), 13],
      ["not present", (g) => sysDesc(g, NEW, NEW_TSS, 0x67, 0x9, 0, false), 11],
      ["limit below 0x67", (g) => sysDesc(g, NEW, NEW_TSS, 0x66, 0x9), 10],
      ["DPL below RPL", (g) => g.ram.set(hex("9a 00 00 00 00 63 00"), CODE), 13],
    ];
    for (const [name, setup, vector] of cases) {
      const g = guest(call);
      setup(g);
      expect(g.run(1000), name).toBe(StopReason.Halted);
      expect(loggedVector(g), name).toBe(vector);
      expect(errorCode(g), name).toBe(NEW);
      expect(tr(g), name).toBe(SEL.tss);
      expect(r32(g.ram, TSS + 0x20), name).toBe(0);
      expect(typeByte(g, SEL.tss), name).toBe(0x8b);
    }
  });

  it("a bad segment in the new TSS faults in the context of the new task (#TS with its selector)", () => {
    const g = guest(hex("9a 00 00 00 00 60 00 f4"));
    tss32(g, NEW_TSS, { ss: SEL.code32 });
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(10);
    expect(errorCode(g)).toBe(SEL.code32);
    // past the commit point: the switch happened and the #TS returns to the new task's EIP
    expect(tr(g)).toBe(NEW);
    expect(r32(g.ram, Number(g.cpu.getGpr(4)) + 4)).toBe(TASK);
    expect(typeByte(g, NEW)).toBe(0x8b);

    const ldt = guest(hex("9a 00 00 00 00 60 00 f4"));
    tss32(ldt, NEW_TSS, { ldt: SEL.data32 });
    expect(ldt.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(ldt)).toBe(10);
    expect(errorCode(ldt)).toBe(SEL.data32);
  });

  it("the new task's LDT is loaded and its data selectors resolve through it", () => {
    const g = guest(hex("9a 00 00 00 00 60 00 f4"));
    const LDT = 0x5800;
    sysDesc(g, 0x78, LDT, 0x0f, 0x2);
    // LDT entry 1: a writable data segment based at 0x123000
    w32(g.ram, LDT + 8, 0x3000ffff);
    w32(g.ram, LDT + 12, 0x00cf9212);
    tss32(g, NEW_TSS, { ldt: 0x78, ds: 0x0c });
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(NEW);
    expect(g.cpu.getSegment(6)).toMatchObject({ selector: 0x78, base: BigInt(LDT), limit: 0x0f });
    expect(g.cpu.getSegment(3)).toMatchObject({ selector: 0x0c, base: 0x123000n });
    // the descriptor's accessed bit was set as it loaded
    expect(g.ram[LDT + 13]).toBe(0x93);
  });

  it("IRET with NT=1 whose back-link is not a busy TSS is #TS(link); in IA-32e mode it is #GP(0)", () => {
    // pushf ; or dword [esp], NT ; popf ; iret
    const g = guest(hex("9c 81 0c 24 00 40 00 00 9d cf"));
    w16(g.ram, TSS, NEW);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(10);
    expect(errorCode(g)).toBe(NEW);

    const long = makeGuest("long", hex("9c 81 0c 24 00 40 00 00 9d 48 cf"));
    expect(long.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(long)).toBe(13);
  });

  it("a 16-bit TSS loads 16-bit state zero-extended and keeps its back-link", () => {
    const g = guest(hex("9a 00 00 00 00 60 00 f4"));
    sysDesc(g, NEW, NEW_TSS, 0x2b, 0x1);
    g.ram.fill(0, NEW_TSS, NEW_TSS + 0x2c);
    w16(g.ram, NEW_TSS + 0x0e, TASK);
    w16(g.ram, NEW_TSS + 0x10, 2);
    w16(g.ram, NEW_TSS + 0x12, 0xbeef);
    w16(g.ram, NEW_TSS + 0x1a, TASK_STACK);
    for (const off of [0x22, 0x26, 0x28]) w16(g.ram, NEW_TSS + off, SEL.data32);
    w16(g.ram, NEW_TSS + 0x24, SEL.code32);
    g.cpu.setGpr(0, 0xffffffffn);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(NEW);
    expect(Number(g.cpu.getGpr(0))).toBe(0xbeef);
    expect(r16(g.ram, NEW_TSS)).toBe(SEL.tss);
    expect(typeByte(g, NEW)).toBe(0x83);
    expect(resume(g)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(SEL.tss);
    expect(Number(g.cpu.getGpr(0))).toBe(0xffffffff);
    expect(r16(g.ram, NEW_TSS + 0x0e)).toBe(TASK + 2);
  });

  it("with paging on, CR3 comes from the new TSS", () => {
    const g = guest(hex("9a 00 00 00 00 60 00 f4"));
    // two identity page directories of 4-MiB pages
    for (const pd of [0x30000, 0x31000]) for (let i = 0; i < 4; i++) w32(g.ram, pd + 4 * i, (i << 22) | 0x83);
    g.cpu.setControl("cr4", 0x10n);
    g.cpu.setControl("cr3", 0x30000n);
    g.cpu.setControl("cr0", 0x80000011n);
    tss32(g, NEW_TSS, { cr3: 0x31000 });
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(tr(g)).toBe(NEW);
    expect(g.cpu.getControl("cr3")).toBe(0x31000n);
    // the processor never writes the outgoing task's CR3 field
    expect(r32(g.ram, TSS + 0x1c)).toBe(0);
  });
});

describe("the shared task-switch guest on the bare interpreter", () => {
  it("runs every case and prints what the SDM says each switch leaves", () => {
    const r = runTaskGuestBare();
    expect(r.stop).toBe(StopReason.Halted);
    const lines = r.out.trim().split("\n");
    const rec = new Map(
      lines.map((l) => [
        l[0],
        l
          .slice(1)
          .trim()
          .split(" ")
          .map((x) => Number.parseInt(x, 16)),
      ]),
    );
    // [EFLAGS, TR, CR0.TS, ESI, EDI, EBP, ...]
    expect([...rec.keys()].join("")).toBe("AaBbCcEeD");
    const nt = (k: string) => rec.get(k)![0] & 0x4000;
    expect([nt("A"), nt("a"), nt("B"), nt("C"), nt("E"), nt("D")]).toEqual([
      0x4000, 0, 0, 0x4000, 0x4000, 0x4000,
    ]);
    expect([..."AaBbCcEeD"].map((k) => rec.get(k)![1])).toEqual([
      0x20, 0x18, 0x28, 0x18, 0x38, 0x18, 0x40, 0x18, 0x48,
    ]);
    for (const k of "AaBbCcEeD") expect(rec.get(k)![2], k).toBe(8);
    // the main task's registers survive every round trip
    for (const k of "abce") expect(rec.get(k)!.slice(3, 6), k).toEqual([0xaaaa0001, 0xbbbb0002, 0xcccc0003]);
    // back-links and busy bytes: CALL nests, JMP frees the main task
    expect(rec.get("A")!.slice(6)).toEqual([0x18, 0x8b, 0]);
    expect(rec.get("B")!.slice(6)).toEqual([0, 0x89, 0x8b]);
    expect(rec.get("C")![6]).toBe(0x18);
    // error codes: #NP(0x58), then #DF(0) with the main task saved at the faulting instruction
    expect(rec.get("E")!.slice(6)).toEqual([0x58, 0x18]);
    expect(rec.get("D")!.slice(6)).toEqual([0, 0x18, 0]);
  });

  it("with paging on, each side of CALL and IRET runs on the page directory its TSS names (case 7)", () => {
    const r = runTaskGuestBare(PAGING_CASE);
    expect(r.stop).toBe(StopReason.Halted);
    const [a, p] = r.out
      .trim()
      .split("\n")
      .map((l) => l.split(" "));
    expect([a![0], p![0]]).toEqual(["A", "p"]);
    // A: TR 0x20 and CR3 = the second directory; back in the caller: TR 0x18 and CR3 = the first
    expect([Number.parseInt(a![2]!, 16), Number.parseInt(a!.at(-1)!, 16)]).toEqual([
      0x20,
      TASK_GUEST_BASE + 0x6000,
    ]);
    expect([Number.parseInt(p![2]!, 16), Number.parseInt(p!.at(-1)!, 16)]).toEqual([
      0x18,
      TASK_GUEST_BASE + 0x5000,
    ]);
  });

  it("a fault past the commit point is delivered in the new task (case 6: SS is a code segment)", () => {
    const r = runTaskGuestBare(TS_CASE);
    expect(r.stop).toBe(StopReason.Halted);
    const [tag, ...v] = r.out.trim().split(" ");
    // [EFLAGS, TR, CR0.TS, ESI, EDI, EBP, error code, pushed EIP - the new task's EIP]
    expect(tag).toBe("T");
    expect(v.map((x) => Number.parseInt(x, 16)).slice(1)).toEqual([0x50, 8, 0, 0, 0, 0x08, 0]);
  });
});
