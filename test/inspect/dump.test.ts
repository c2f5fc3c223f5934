import { describe, expect, it } from "vitest";
import { formatRegisters } from "../../lib/inspect/dump.js";
import {
  decodeCr0,
  decodeCr3,
  decodeCr4,
  decodeEfer,
  decodeRflags,
  qemuFlagLetters,
} from "../../lib/inspect/flags.js";
import { cpuMode, decodeDescriptor, describeSegment, segmentAttributes } from "../../lib/inspect/segments.js";
import { emptyRegs, type Regs, type Segment, type SpecialRegs } from "../../lib/types/regs.js";
import { realSeg, resetSregs } from "../vmm/fake-backend.js";

function longModeState(): { regs: Regs; sregs: SpecialRegs } {
  const code: Segment = {
    ...realSeg(0x18, 0xb),
    base: 0n,
    limit: 0xffffffff,
    g: true,
    l: true,
    selector: 0x18,
  };
  const data: Segment = {
    ...realSeg(0x10, 0x3),
    base: 0n,
    limit: 0xffffffff,
    g: true,
    db: true,
    selector: 0x10,
  };
  const regs = {
    ...emptyRegs(),
    rax: 0xdeadbeefcafebaben,
    r15: 1n,
    rip: 0xffffffff81000000n,
    rflags: 0x246n,
  };
  const sregs: SpecialRegs = {
    ...resetSregs(),
    cs: code,
    ds: data,
    es: data,
    ss: data,
    fs: data,
    gs: { ...data, base: 0xffff888000000000n },
    tr: { ...realSeg(0x28, 0xb), s: false, base: 0x5000n, limit: 0x67 },
    gdt: { base: 0x1000n, limit: 0x2f },
    idt: { base: 0x2000n, limit: 0xfff },
    cr0: 0x80050033n,
    cr3: 0x9000n,
    cr4: 0x6b0n,
    efer: 0xd01n,
  };
  return { regs, sregs };
}

describe("register dump", () => {
  it("prints the QEMU `info registers` layout in long mode", () => {
    const { regs, sregs } = longModeState();
    const lines = formatRegisters(regs, sregs).split("\n");
    expect(lines[0]).toBe(
      "RAX=deadbeefcafebabe RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000",
    );
    expect(lines[3]).toBe(
      "R12=0000000000000000 R13=0000000000000000 R14=0000000000000000 R15=0000000000000001",
    );
    expect(lines[4]).toBe("RIP=ffffffff81000000 RFL=00000246 [---Z-P-] CPL=0");
    expect(lines[6]).toBe("CS =0018 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]");
    expect(lines[7]).toBe("SS =0010 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]");
    expect(lines[10]).toBe("GS =0010 ffff888000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]");
    expect(lines[12]).toBe("TR =0028 0000000000005000 00000067 00008b00 DPL=0 TSS64-busy");
    expect(lines[13]).toBe("GDT=     0000000000001000 0000002f");
    expect(lines[15]).toBe("CR0=80050033 CR2=0000000000000000 CR3=0000000000009000 CR4=000006b0");
    expect(lines[16]).toBe("EFER=0000000000000d01");
    expect(lines).toContain("Mode=long");
    expect(lines).toContain("RFLAGS: PF ZF IF");
    expect(lines).toContain("CR0: PE MP ET NE WP AM PG");
    expect(lines).toContain("EFER: SCE LME LMA NXE");
  });

  it("uses the 32-bit layout outside long mode, with real-mode segments undecoded", () => {
    const regs = { ...emptyRegs(), rax: 0x1234n, rip: 0x7c00n };
    const text = formatRegisters(regs, resetSregs());
    const lines = text.split("\n");
    expect(lines[0]).toBe("EAX=00001234 EBX=00000000 ECX=00000000 EDX=00000000");
    expect(lines[2]).toBe("EIP=00007c00 RFL=00000002 [-------] CPL=0");
    expect(lines[3]).toBe("ES =0000 00000000 0000ffff 00009300");
    expect(lines[4]).toBe("CS =0000 00000000 0000ffff 00009b00");
    expect(text).toMatch(/^CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000$/m);
    expect(text).toMatch(/^Mode=real$/m);
    expect(text).toMatch(/^CR0: ET NW CD$/m);
  });

  it("qemuOnly drops the decoded lines", () => {
    const { regs, sregs } = longModeState();
    const text = formatRegisters(regs, sregs, { qemuOnly: true });
    expect(text).not.toMatch(/Mode=/);
    expect(text.trim().split("\n")).toHaveLength(17);
  });
});

describe("flag and control-register decoding", () => {
  it("names RFLAGS bits, IOPL and QEMU's letters", () => {
    expect(decodeRflags(0x3202n)).toEqual(["IF", "IOPL=3"]);
    expect(decodeRflags(0x408d5n)).toEqual(["CF", "PF", "AF", "ZF", "SF", "OF", "AC"]);
    expect(qemuFlagLetters(0x8d5)).toBe("-OSZAPC");
    expect(qemuFlagLetters(0xcd5)).toBe("DOSZAPC");
    expect(qemuFlagLetters(0x400)).toBe("D------");
  });

  it("decodes CR0, CR4, EFER and CR3 per paging mode", () => {
    expect(decodeCr0(0x80000011n)).toEqual(["PE", "ET", "PG"]);
    expect(decodeCr4(0x20n | (1n << 13n))).toEqual(["PAE", "VMXE"]);
    expect(decodeEfer(0x500n)).toEqual(["LME", "LMA"]);
    expect(decodeCr3(0x1018n, 0n, 0n)).toBe("PD=0x1000 PWT PCD");
    expect(decodeCr3(0x1fe0n, 0x20n, 0n)).toBe("PDPT=0x1fe0");
    expect(decodeCr3(0x9000n, 0x20n, 0x500n)).toBe("PML4=0x9000");
  });
});

describe("segments and descriptors", () => {
  it("decodes raw GDT descriptors (flat code, flat data, 64-bit code, TSS)", () => {
    // 0x00cf9a000000ffff: flat 32-bit code, G=1, D=1
    const code32 = decodeDescriptor(0x0000ffff, 0x00cf9a00, 0x08);
    expect(code32).toMatchObject({
      base: 0n,
      limit: 0xffffffff,
      type: 0xa,
      s: true,
      dpl: 0,
      present: true,
      db: true,
      g: true,
      l: false,
    });
    expect(describeSegment(code32, true, false)).toBe("DPL=0 CS32 [-R-]");
    const code64 = decodeDescriptor(0x0000ffff, 0x00af9b00, 0x18);
    expect(describeSegment(code64, true, true)).toBe("DPL=0 CS64 [-RA]");
    // TSS at base 0x12345678 limit 0x67, type 9
    const tss = decodeDescriptor(0x56780067, 0x12008934);
    expect(tss).toMatchObject({ base: 0x12345678n, limit: 0x67, type: 9, s: false, present: true });
    expect(describeSegment(tss, true, false)).toBe("DPL=0 TSS32-avl");
    expect(segmentAttributes(code32)).toBe(0x00cf9a00);
    const user = decodeDescriptor(0x0000ffff, 0x00cff300);
    expect(describeSegment(user, true, false)).toBe("DPL=3 DS   [-WA]");
  });

  it("tells the CPU mode from CR0, EFER, CS and RFLAGS.VM", () => {
    const s = resetSregs();
    expect(cpuMode(s)).toBe("real");
    expect(cpuMode({ ...s, cr0: 1n })).toBe("protected-16");
    expect(cpuMode({ ...s, cr0: 1n }, 1n << 17n)).toBe("virtual-8086");
    expect(cpuMode({ ...s, cr0: 1n, cs: { ...s.cs, db: true } })).toBe("protected-32");
    expect(cpuMode({ ...s, cr0: 0x80000001n, efer: 0x500n, cs: { ...s.cs, l: true } })).toBe("long");
    expect(cpuMode({ ...s, cr0: 0x80000001n, efer: 0x500n })).toBe("compatibility");
  });
});

describe("descriptor table listing", () => {
  it("lists GDT entries from memory, with 16-byte system descriptors in long mode", async () => {
    const { GuestMemory } = await import("../../lib/vmm/memory.js");
    const { listDescriptors } = await import("../../lib/inspect/gdt.js");
    const m = new GuestMemory();
    m.addRegion(0, new Uint8Array(0x2000));
    const put = (i: number, lo: number, hi: number) => {
      m.writeU32(0x1000 + i * 8, lo);
      m.writeU32(0x1000 + i * 8 + 4, hi);
    };
    put(1, 0x0000ffff, 0x00af9b00); // 64-bit code
    put(2, 0x0000ffff, 0x00cf9300); // data
    put(3, 0x50000067, 0x00008b00); // TSS, base low 0x5000
    put(4, 0x00000001, 0); // TSS base bits 63:32
    const list = listDescriptors(m, { base: 0x1000n, limit: 5 * 8 - 1 }, true);
    expect(list.map((e) => e.selector)).toEqual([0, 8, 0x10, 0x18]);
    expect(list[0]!.text).toMatch(/null$/);
    expect(list[1]!.text).toMatch(/00af9b00 DPL=0 CS64 \[-RA\]$/);
    expect(list[3]!.text).toMatch(
      /^0018: 00008b0050000067 base=100005000 limit=00000067 00008b00 DPL=0 TSS64-busy$/,
    );
    // a table running past RAM stops instead of throwing
    expect(listDescriptors(m, { base: 0x1ff8n, limit: 0xff }, false)).toHaveLength(1);
  });
});
