import { describe, expect, it } from "vitest";
import { BootSetupError, detectFormat, loadImage, MULTIBOOT_BOOTLOADER_MAGIC } from "../../lib/boot/index.js";
import { aoutKernel, buildElf, multibootHeader, ram } from "./fixtures.js";

const elf64 = buildElf({
  bits: 64,
  entry: 0x100000,
  segments: [{ vaddr: 0x100000, data: new Uint8Array(32).fill(0x90) }],
});
const mbElf = buildElf({
  bits: 32,
  entry: 0x100000,
  prefix: multibootHeader(0x3),
  segments: [{ vaddr: 0x100000, data: new Uint8Array(32).fill(0x90) }],
});

describe("detectFormat / loadImage", () => {
  it("prefers a valid multiboot header, then ELF magic, else flat", () => {
    expect(detectFormat(mbElf)).toBe("multiboot");
    expect(detectFormat(aoutKernel({ loadAddr: 0x100000, size: 0x100 }))).toBe("multiboot");
    expect(detectFormat(elf64)).toBe("elf");
    expect(detectFormat(Uint8Array.of(0xfa, 0xf4))).toBe("flat");
    // a magic with a bad checksum does not make an image multiboot
    const bogus = new Uint8Array(64);
    bogus.set(multibootHeader(0x3, [], 1), 8);
    expect(detectFormat(bogus)).toBe("flat");
  });

  it("dispatches to the detected loader, or the one asked for", () => {
    let { mem } = ram();
    expect(loadImage(mem, mbElf, { cmdline: "x" }).entry.regs.rax).toBe(BigInt(MULTIBOOT_BOOTLOADER_MAGIC));
    ({ mem } = ram());
    expect(loadImage(mem, mbElf, { format: "elf" }).format).toBe("elf32");
    ({ mem } = ram());
    expect(loadImage(mem, elf64).entry.mode).toBe("long");
    ({ mem } = ram());
    const flat = loadImage(mem, Uint8Array.of(0xf4));
    expect([flat.format, flat.entry.mode, flat.entry.regs.rip]).toEqual(["flat", "real", 0x7c00n]);
    ({ mem } = ram());
    expect(loadImage(mem, elf64, { format: "flat", address: 0x200000, mode: "long" }).loaded[0]!.gpa).toBe(
      0x200000,
    );
    expect(() => loadImage(mem, elf64, { format: "coff" as never })).toThrow(BootSetupError);
  });
});
