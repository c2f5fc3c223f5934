import { describe, expect, it } from "vitest";
import { formatTranslation, pagingMode, walkPageTables } from "../../lib/inspect/pagewalk.js";
import { GuestMemory } from "../../lib/vmm/memory.js";

function ram(): GuestMemory {
  const m = new GuestMemory();
  m.addRegion(0, new Uint8Array(1 << 20));
  return m;
}

const P = 1n;
const W = 2n;
const U = 4n;
const PS = 0x80n;
const NX = 1n << 63n;

describe("page-table walk", () => {
  it("without paging the linear address is the physical one", () => {
    const t = walkPageTables(ram(), { cr0: 1n, cr3: 0n, cr4: 0n, efer: 0n }, 0x12345n);
    expect(t).toMatchObject({ mode: "none", physical: 0x12345n, levels: [] });
  });

  it("walks 32-bit tables, 4 KiB and PSE 4 MiB pages, and reports a missing entry", () => {
    const m = ram();
    m.writeU32(0x1000 + 1 * 4, 0x2000 | 3);
    m.writeU32(0x2000 + 5 * 4, 0x7000 | 7);
    m.writeU32(0x1000 + 2 * 4, 0x00800000 | 0x83);
    const paging = { cr0: 0x80000001n, cr3: 0x1000n, cr4: 0x10n, efer: 0n };
    expect(pagingMode(paging)).toBe("32-bit");

    const t = walkPageTables(m, paging, 0x00405123n);
    expect(t.physical).toBe(0x7123n);
    expect(t.pageSize).toBe(4096);
    expect(t.levels.map((l) => [l.level, l.index, l.entryAddress])).toEqual([
      ["PD", 1, 0x1004],
      ["PT", 5, 0x2014],
    ]);
    expect(t.user).toBe(false); // the PDE has U/S clear
    expect(t.writable).toBe(true);

    const big = walkPageTables(m, paging, 0x00812345n);
    expect(big).toMatchObject({ physical: 0x812345n, pageSize: 4 << 20 });
    expect(big.levels[0]!.leaf).toBe(true);

    const miss = walkPageTables(m, paging, 0x00c00000n);
    expect(miss.physical).toBeUndefined();
    expect(miss.fault).toMatch(/PD\[3\] at 0x100c is not present/);
  });

  it("walks PAE tables with a 2 MiB execute-disable page", () => {
    const m = ram();
    m.writeU64(0x3000, 0x4000n | P);
    m.writeU64(0x4000 + 8, 0x00200000n | P | W | PS | NX);
    const paging = { cr0: 0x80000001n, cr3: 0x3000n, cr4: 0x20n, efer: 0x800n };
    const t = walkPageTables(m, paging, 0x00212345n);
    expect(t).toMatchObject({ mode: "pae", physical: 0x212345n, pageSize: 2 << 20, executable: false });
    expect(t.levels.map((l) => l.level)).toEqual(["PDPT", "PD"]);
    // without EFER.NXE bit 63 is not execute-disable
    expect(walkPageTables(m, { ...paging, efer: 0n }, 0x00212345n).executable).toBe(true);
  });

  it("walks 4-level tables to 4 KiB and 1 GiB pages, and rejects non-canonical addresses", () => {
    const m = ram();
    m.writeU64(0x5000, 0x6000n | P | W);
    m.writeU64(0x6000, 0x7000n | P | W);
    m.writeU64(0x7000, 0x8000n | P | W | U);
    m.writeU64(0x8000 + 0x7c * 8, 0xa000n | P);
    m.writeU64(0x6000 + 8, 0x40000000n | P | W | PS);
    const paging = { cr0: 0x80000001n, cr3: 0x5000n, cr4: 0x20n, efer: 0x500n };
    const t = walkPageTables(m, paging, 0x7c123n);
    expect(t.physical).toBe(0xa123n);
    expect(t.levels.map((l) => `${l.level}[${l.index}]`)).toEqual(["PML4[0]", "PDPT[0]", "PD[0]", "PT[124]"]);
    expect(t.writable).toBe(false); // the PTE is read-only
    expect(formatTranslation(t)).toContain("-> physical 0xa123 (4 KiB page)");

    const huge = walkPageTables(m, paging, 0x7fff1234n);
    expect(huge).toMatchObject({ physical: 0x7fff1234n, pageSize: 1 << 30 });

    const bad = walkPageTables(m, paging, 0x0000800000000000n);
    expect(bad.fault).toMatch(/not canonical/);
    expect(bad.levels).toEqual([]);

    const high = walkPageTables(m, paging, 0xffff800000000000n);
    expect(high.fault).toMatch(/PML4\[256\].*not present/);
  });

  it("reports tables that are not in guest RAM instead of throwing", () => {
    const paging = { cr0: 0x80000001n, cr3: 0x10000000n, cr4: 0x20n, efer: 0x500n };
    const t = walkPageTables(ram(), paging, 0x1000n);
    expect(t.fault).toMatch(/0x10000000 is not in guest RAM/);
    expect(formatTranslation(t)).toMatch(/fault/);
  });
});
