import { describe, expect, it } from "vitest";
import { DEFAULT_LAYOUT, loadElf, MULTIBOOT_BOOTLOADER_MAGIC, parseElf } from "../../lib/boot/index.js";
import { expectImageError } from "./expect-error.js";
import {
  buildElf,
  type ElfSpec,
  isFilled,
  MiB,
  phAt,
  phField,
  ram,
  setU16,
  setU32,
  setU64,
} from "./fixtures.js";

const text = Uint8Array.from({ length: 40 }, (_, i) => i + 1);
const data = Uint8Array.from({ length: 12 }, (_, i) => 0xc0 + i);

function twoSegments(bits: 32 | 64): ElfSpec {
  return {
    bits,
    entry: 0x100010,
    segments: [
      { vaddr: 0x100000, data: text },
      // bss: 0x100 bytes in memory, 12 from the file
      { vaddr: 0x101000, data, memsz: 0x100 },
    ],
  };
}

describe("loadElf", () => {
  for (const bits of [32, 64] as const) {
    it(`ELF${bits}: PT_LOAD segments at p_paddr, bss zeroed, entered in ${bits === 32 ? "protected" : "long"} mode`, () => {
      const { mem, bytes } = ram();
      const r = loadElf(mem, buildElf(twoSegments(bits)));
      expect(r.format).toBe(`elf${bits}`);
      expect(mem.read(0x100000, text.length)).toEqual(text);
      expect(mem.read(0x101000, data.length)).toEqual(data);
      expect(isFilled(mem.view(0x101000 + data.length, 0x100 - data.length), 0)).toBe(true);
      // nothing beyond p_memsz is touched
      expect(mem.readU8(0x101100)).toBe(0xaa);
      expect(mem.readU8(0x100000 + text.length)).toBe(0xaa);
      expect(r.loaded).toEqual([
        { gpa: 0x100000, size: text.length, fileSize: text.length },
        { gpa: 0x101000, size: 0x100, fileSize: data.length },
      ]);
      expect(r.entry.regs.rip).toBe(0x100010n);
      expect(r.entry.mode).toBe(bits === 32 ? "protected" : "long");
      expect(r.entry.sregs.cs.l).toBe(bits === 64);
      expect(r.entry.sregs.cr3).toBe(bits === 64 ? BigInt(DEFAULT_LAYOUT.pageTables) : 0n);
      // long mode wrote page tables, protected mode did not
      expect(isFilled(mem.view(DEFAULT_LAYOUT.pageTables, 0x1000))).toBe(bits === 32);
      expect(r.entry.regs.rax).not.toBe(BigInt(MULTIBOOT_BOOTLOADER_MAGIC));
      expect(bytes.length).toBe(4 * MiB);
    });
  }

  it("translates a virtual entry point through its segment (vaddr != paddr)", () => {
    const { mem } = ram();
    const elf = buildElf({
      bits: 32,
      entry: 0xc0100008,
      segments: [{ vaddr: 0xc0100000, paddr: 0x100000, data: text }],
    });
    const r = loadElf(mem, elf);
    expect(r.entry.regs.rip).toBe(0x100008n);
    expect(mem.read(0x100000, text.length)).toEqual(text);
    expect(parseElf(elf).entry).toBe(0xc0100008);
  });

  it("skips non-LOAD program headers", () => {
    const { mem } = ram();
    const spec = twoSegments(64);
    spec.segments.push({ type: 4 /* PT_NOTE */, vaddr: 0x500, data: Uint8Array.of(9, 9, 9, 9) });
    const r = loadElf(mem, buildElf(spec));
    expect(r.loaded).toHaveLength(2);
    expect(mem.readU8(0x500)).not.toBe(9);
  });
});

describe("loadElf rejects bad images, naming the field and offset, before writing", () => {
  for (const bits of [32, 64] as const) {
    const good = buildElf(twoSegments(bits));
    const ph1 = phAt(bits, 1);
    const cases: [string, Uint8Array, string, number, RegExp][] = [
      ["truncated identification", good.subarray(0, 10), "e_ident", 0, /too short/],
      ["truncated header", good.subarray(0, 40), "ELF header", 0, /header needs/],
      ["wrong magic", setU32(good, 0, 0x464c457e), "e_ident[EI_MAG]", 0, /magic/],
      ["bad class", Uint8Array.from(good, (b, i) => (i === 4 ? 3 : b)), "e_ident[EI_CLASS]", 4, /class 3/],
      [
        "big-endian",
        Uint8Array.from(good, (b, i) => (i === 5 ? 2 : b)),
        "e_ident[EI_DATA]",
        5,
        /little-endian/,
      ],
      [
        "bad version",
        Uint8Array.from(good, (b, i) => (i === 6 ? 0 : b)),
        "e_ident[EI_VERSION]",
        6,
        /EV_CURRENT/,
      ],
      ["shared object", setU16(good, 16, 3), "e_type", 16, /ET_EXEC/],
      ["wrong machine", setU16(good, 18, 40), "e_machine", 18, /machine 40/],
      [
        "bad phentsize",
        setU16(good, bits === 32 ? 42 : 54, 40),
        "e_phentsize",
        bits === 32 ? 42 : 54,
        /size 40/,
      ],
      [
        "no program headers",
        setU16(good, bits === 32 ? 44 : 56, 0),
        "e_phnum",
        bits === 32 ? 44 : 56,
        /no program headers/,
      ],
      ["absurd phnum", setU16(good, bits === 32 ? 44 : 56, 5000), "e_phnum", bits === 32 ? 44 : 56, /absurd/],
      [
        "program headers past the end",
        bits === 32 ? setU32(good, 28, good.length - 8) : setU64(good, 32, BigInt(good.length - 8)),
        "e_phoff",
        bits === 32 ? 28 : 32,
        /past the end/,
      ],
      [
        "truncated segment data",
        good.subarray(0, good.length - 4),
        "ph[1].p_offset",
        ph1 + phField(bits, "p_offset"),
        /truncated/,
      ],
      [
        "filesz > memsz",
        bits === 32 ? setU32(good, ph1 + 20, 4) : setU64(good, ph1 + 40, 4n),
        "ph[1].p_filesz",
        ph1 + phField(bits, "p_filesz"),
        /exceeds memory size/,
      ],
      [
        "absurd memsz",
        bits === 32 ? setU32(good, ph1 + 20, 0xf0000000) : setU64(good, ph1 + 40, 1n << 40n),
        "ph[1].p_memsz",
        ph1 + phField(bits, "p_memsz"),
        /larger than guest RAM/,
      ],
      [
        "segment outside RAM",
        bits === 32 ? setU32(good, ph1 + 12, 0x3fff80) : setU64(good, ph1 + 24, 0x3fff80n),
        "ph[1].p_paddr",
        ph1 + phField(bits, "p_paddr"),
        /outside guest RAM/,
      ],
      [
        "overlapping segments",
        bits === 32 ? setU32(good, ph1 + 12, 0x100020) : setU64(good, ph1 + 24, 0x100020n),
        "ph[1].p_paddr",
        ph1 + phField(bits, "p_paddr"),
        /overlaps ph\[0\]\.p_paddr/,
      ],
      [
        "segment over the loader's GDT",
        bits === 32 ? setU32(good, ph1 + 12, 0x4f0) : setU64(good, ph1 + 24, 0x4f0n),
        "ph[1].p_paddr",
        ph1 + phField(bits, "p_paddr"),
        /GDT/,
      ],
      [
        "entry outside segments",
        bits === 32 ? setU32(good, 24, 0x200000) : setU64(good, 24, 0x200000n),
        "e_entry",
        24,
        /not inside any PT_LOAD/,
      ],
      [
        "dynamically linked",
        setU32(good, phAt(bits, 0), 3),
        "ph[0].p_type",
        phAt(bits, 0),
        /dynamically linked/,
      ],
    ];
    if (bits === 64) {
      cases.push([
        "address beyond 2^53",
        setU64(good, ph1 + 24, 1n << 60n),
        "ph[1].p_paddr",
        ph1 + 24,
        /absurd/,
      ]);
    }
    for (const [name, image, field, offset, message] of cases) {
      it(`ELF${bits}: ${name}`, () => {
        const { mem, bytes } = ram();
        expectImageError(() => loadElf(mem, image), bytes, field, offset, message);
      });
    }
  }

  it("ELF64 whose entry is above 4 GiB cannot be entered on the identity map", () => {
    const { mem, bytes } = ram();
    const elf = buildElf({
      bits: 64,
      entry: 0x1_0000_0010,
      segments: [{ vaddr: 0x1_0000_0000, paddr: 0x1_0000_0000, data: text }],
    });
    // the segment itself is outside RAM too, but the entry check comes first: it is about the image
    expectImageError(() => loadElf(mem, elf), bytes, "e_entry", 24, /4 GiB/);
  });
});
