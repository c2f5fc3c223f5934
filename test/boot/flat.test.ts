import { describe, expect, it } from "vitest";
import {
  BootSetupError,
  DEFAULT_LAYOUT,
  type EntryState,
  GDT_LIMIT,
  type LoadTarget,
  loadFlat,
} from "../../lib/boot/index.js";
import type { Regs, SpecialRegs } from "../../lib/types/regs.js";
import type { GuestMemory } from "../../lib/vmm/memory.js";
import { expectImageError } from "./expect-error.js";
import { isFilled, MiB, ram } from "./fixtures.js";

const code = Uint8Array.from([0xfa, 0xf4, 0xeb, 0xfd, 1, 2, 3, 4, 5]);

/** Walks 4-level paging (2 MiB leaves) as the CPU would, reading guest memory. */
function translate(mem: GuestMemory, cr3: bigint, va: bigint): bigint | undefined {
  const ADDR = 0x000ffffffffff000n;
  let table = cr3 & ADDR;
  for (const shift of [39n, 30n]) {
    const e = mem.readU64(Number(table + ((va >> shift) & 0x1ffn) * 8n));
    if (!(e & 1n)) return undefined;
    table = e & ADDR;
  }
  const pde = mem.readU64(Number(table + ((va >> 21n) & 0x1ffn) * 8n));
  if (!(pde & 1n) || !(pde & 0x80n)) return undefined;
  return (pde & 0x000fffffffe00000n) | (va & 0x1fffffn);
}

function gdtEntry(mem: GuestMemory, state: EntryState, selector: number): bigint {
  return mem.readU64(Number(state.sregs.gdt.base) + selector);
}

/** The base/limit/flags a descriptor encodes, in the shape of EntrySegment. */
function decode(d: bigint) {
  const limit = Number((d & 0xffffn) | ((d >> 32n) & 0xf0000n));
  const g = Boolean((d >> 55n) & 1n);
  return {
    base: (d >> 16n) & 0xffffffn,
    limit: g ? limit * 4096 + 4095 : limit,
    type: Number((d >> 40n) & 0xfn),
    s: Boolean((d >> 44n) & 1n),
    present: Boolean((d >> 47n) & 1n),
    l: Boolean((d >> 53n) & 1n),
    db: Boolean((d >> 54n) & 1n),
    g,
  };
}

describe("loadFlat", () => {
  it("defaults to the boot-sector convention: 0x7C00, real mode, CS:IP 0:7C00, DL=0x80", () => {
    const { mem } = ram();
    const r = loadFlat(mem, code);
    expect(r.format).toBe("flat");
    expect(mem.read(0x7c00, code.length)).toEqual(code);
    expect(r.entry.mode).toBe("real");
    expect(r.entry.sregs.cs.selector).toBe(0);
    expect(r.entry.sregs.cs.base).toBe(0n);
    expect(r.entry.regs.rip).toBe(0x7c00n);
    expect(r.entry.regs.rdx).toBe(0x80n);
    expect(r.entry.regs.rsp).toBe(0x7c00n);
    expect(r.entry.sregs.cr0 & 1n).toBe(0n);
    expect(r.entry.sregs.idt).toEqual({ base: 0n, limit: 0x3ff });
    expect(r.loaded).toEqual([{ gpa: 0x7c00, size: code.length, fileSize: code.length }]);
    expect(r.reserved).toEqual([]);
  });

  it("reaches real-mode addresses above 64 KiB through CS", () => {
    const { mem } = ram();
    const r = loadFlat(mem, code, { address: 0x12345, mode: "real" });
    const cs = r.entry.sregs.cs;
    expect(cs.base + r.entry.regs.rip!).toBe(0x12345n);
    expect(BigInt(cs.selector) << 4n).toBe(cs.base);
    expect(r.entry.regs.rip! <= 0xffffn).toBe(true);
  });

  it("protected mode: flat GDT in guest memory that matches the segment registers, CR0.PE", () => {
    const { mem } = ram();
    const r = loadFlat(mem, code, { address: 0x200000, mode: "protected" });
    const s = r.entry.sregs;
    expect(r.entry.mode).toBe("protected");
    expect(mem.read(0x200000, code.length)).toEqual(code);
    expect(r.entry.regs.rip).toBe(0x200000n);
    expect(s.cr0 & 1n).toBe(1n);
    expect(s.cr0 & (1n << 31n)).toBe(0n);
    expect(s.gdt).toEqual({ base: BigInt(DEFAULT_LAYOUT.gdt), limit: GDT_LIMIT });
    for (const name of ["cs", "ds", "es", "fs", "gs", "ss"] as const) {
      const seg = s[name];
      const d = decode(gdtEntry(mem, r.entry, seg.selector));
      expect(d).toEqual({
        base: seg.base,
        limit: seg.limit,
        type: seg.type,
        s: seg.s,
        present: seg.present,
        l: seg.l,
        db: seg.db,
        g: seg.g,
      });
    }
    expect(s.cs.db).toBe(true);
    expect(s.cs.type & 0x8).toBe(0x8); // code
    expect(s.ds.type & 0x8).toBe(0); // data
    expect(s.tr.present && !s.tr.unusable && s.tr.type === 0xb).toBe(true);
    expect(r.entry.regs.rsp).toBe(0x200000n);
  });

  it("long mode: identity page tables cover 4 GiB with 2 MiB pages, 64-bit CS, PAE/LME/LMA/PG", () => {
    const { mem } = ram();
    const r = loadFlat(mem, code, { address: 0x100000, mode: "long", entry: 0x100004 });
    const s = r.entry.sregs;
    expect(r.entry.mode).toBe("long");
    expect(r.entry.regs.rip).toBe(0x100004n);
    expect(s.cr0 & 0x80000001n).toBe(0x80000001n);
    expect(s.cr4 & 0x20n).toBe(0x20n);
    expect(s.efer & 0x500n).toBe(0x500n);
    expect(s.cr3).toBe(BigInt(DEFAULT_LAYOUT.pageTables));
    expect(s.cs.l && !s.cs.db).toBe(true);
    const d = decode(gdtEntry(mem, r.entry, s.cs.selector));
    expect(d.l && !d.db && d.present).toBe(true);
    for (const va of [
      0n,
      0x7c00n,
      0x100004n,
      0x3fffffffn,
      0x40000000n,
      0x12345678n,
      0xfee00000n,
      0xffffffffn,
    ]) {
      expect(translate(mem, s.cr3, va)).toBe(va);
    }
    expect(translate(mem, s.cr3, 0x100000000n)).toBeUndefined();
    expect(r.reserved.map((x) => x.what)).toEqual(["GDT", "page tables"]);
  });

  it("honours a custom layout and stack", () => {
    const { mem } = ram();
    const r = loadFlat(mem, code, {
      mode: "long",
      layout: { gdt: 0x800, pageTables: 0x20000 },
      stack: 0x90000,
    });
    expect(r.entry.sregs.gdt.base).toBe(0x800n);
    expect(r.entry.sregs.cr3).toBe(0x20000n);
    expect(r.entry.regs.rsp).toBe(0x90000n);
    expect(translate(mem, 0x20000n, 0x123456n)).toBe(0x123456n);
  });

  it("rejects bad images before writing anything", () => {
    const { mem, bytes } = ram();
    expectImageError(() => loadFlat(mem, new Uint8Array(0)), bytes, "image", 0, /empty/);
    expectImageError(
      () => loadFlat(mem, code, { address: 4 * MiB - 4, mode: "protected" }),
      bytes,
      "image",
      0,
      /outside guest RAM/,
    );
    expectImageError(
      () => loadFlat(mem, new Uint8Array(5 * MiB), { mode: "protected" }),
      bytes,
      "image",
      0,
      /larger than guest RAM/,
    );
    expectImageError(
      () => loadFlat(mem, new Uint8Array(0x20000), { address: 0xf8000, mode: "real" }),
      bytes,
      "image",
      0,
      /top of real-mode memory/,
    );
    expectImageError(
      () => loadFlat(mem, code, { address: 0x500, mode: "protected" }),
      bytes,
      "image",
      0,
      /overlaps the loader's GDT/,
    );
    expectImageError(
      () => loadFlat(mem, new Uint8Array(0x10000), { address: 0x90000, mode: "long" }),
      bytes,
      "image",
      0,
      /overlaps the loader's page tables/,
    );
  });

  it("rejects bad options with BootSetupError, also before writing", () => {
    const { mem, bytes } = ram();
    expect(() => loadFlat(mem, code, { address: -1 })).toThrow(BootSetupError);
    expect(() => loadFlat(mem, code, { address: 0.5 })).toThrow(BootSetupError);
    expect(() => loadFlat(mem, code, { mode: "weird" as never })).toThrow(/mode/);
    expect(() => loadFlat(mem, code, { mode: "real", stack: 0x20000 })).toThrow(/stack/);
    expect(() => loadFlat(mem, code, { mode: "long", entry: 2 ** 33 })).toThrow(/4 GiB/);
    expect(() => loadFlat(mem, code, { mode: "long", layout: { pageTables: 0x1234 } })).toThrow(/aligned/);
    const small = ram(1);
    // 1 MiB of RAM has no room for page tables at the 4 MiB mark
    expect(() => loadFlat(small.mem, code, { mode: "long", layout: { pageTables: 0x400000 } })).toThrow(
      /not RAM/,
    );
    expect(isFilled(bytes) && isFilled(small.bytes)).toBe(true);
  });

  it("produces state that fits the machine's register types and targets GuestMemory", () => {
    const { mem } = ram();
    const target: LoadTarget = mem;
    const r = loadFlat(target, code, { mode: "long" });
    const sregs: Partial<SpecialRegs> = r.entry.sregs;
    const regs: Partial<Regs> = r.entry.regs;
    expect(Object.keys(sregs).sort()).toEqual(
      ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt", "gdt", "idt", "cr0", "cr3", "cr4", "efer"].sort(),
    );
    expect(Object.values(regs).every((v) => typeof v === "bigint")).toBe(true);
  });
});
