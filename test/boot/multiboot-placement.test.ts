// Where the multiboot information goes when the kernel or its modules sit where it used to (QEMU's
// 0x9000), and the command line as GRUB and QEMU hand it over: the image's name first.
import { describe, expect, it } from "vitest";
import { kernelCommandLine, type LoadResult, loadMultiboot } from "../../lib/boot/index.js";
import { GuestMemory } from "../../lib/vmm/memory.js";
import { expectImageError } from "./expect-error.js";
import { aoutKernel, MiB, ram } from "./fixtures.js";

function cString(mem: GuestMemory, gpa: number): string {
  let s = "";
  for (let a = gpa; mem.readU8(a) !== 0; a++) s += String.fromCharCode(mem.readU8(a));
  return s;
}

const EBDA = 0x9fc00;

/** Every byte the kernel sees through EBX (structure, memory map, module list, strings). */
function infoPieces(mem: GuestMemory, info: number): { gpa: number; size: number }[] {
  const pieces = [
    { gpa: info, size: 68 },
    { gpa: mem.readU32(info + 48), size: mem.readU32(info + 44) },
    { gpa: mem.readU32(info + 24), size: mem.readU32(info + 20) * 16 },
  ];
  const strings = [mem.readU32(info + 16), mem.readU32(info + 64)];
  for (let i = 0; i < mem.readU32(info + 20); i++)
    strings.push(mem.readU32(mem.readU32(info + 24) + i * 16 + 8));
  for (const s of strings) pieces.push({ gpa: s, size: cString(mem, s).length + 1 });
  return pieces;
}

/** The information overlaps neither what was loaded nor the BIOS areas, and lies in RAM below 4 GiB. */
function expectClear(mem: GuestMemory, result: LoadResult): void {
  const info = Number(result.entry.regs.rbx);
  expect(info).toBe(result.bootInfo);
  for (const p of infoPieces(mem, info)) {
    expect(mem.find(p.gpa, p.size)).toBeDefined();
    expect(p.gpa + p.size).toBeLessThanOrEqual(2 ** 32);
    expect(p.gpa >= 0x500).toBe(true);
    // below the EBDA or above 1 MiB, never in 0x9FC00-0xFFFFF
    expect(p.gpa + p.size <= EBDA || p.gpa >= 0x100000).toBe(true);
    for (const l of result.loaded) {
      expect(p.gpa + p.size <= l.gpa || l.gpa + l.size <= p.gpa).toBe(true);
    }
    for (const r of result.reserved.filter((x) => x.what !== "multiboot information")) {
      expect(p.gpa + p.size <= r.gpa || r.gpa + r.size <= p.gpa).toBe(true);
    }
  }
}

describe("multiboot command line", () => {
  it("starts with the image name, as GRUB and QEMU -kernel pass it", () => {
    const { mem } = ram();
    const r = loadMultiboot(mem, aoutKernel({ loadAddr: 0x100000, size: 0x100 }), {
      imageName: "images/kernel.elf",
      cmdline: "console=ttyS0 greeting=hello",
    });
    expect(cString(mem, mem.readU32(r.bootInfo! + 16))).toBe(
      "images/kernel.elf console=ttyS0 greeting=hello",
    );
  });

  it("is the image name alone when there is no command line", () => {
    const { mem } = ram();
    const r = loadMultiboot(mem, aoutKernel({ loadAddr: 0x100000, size: 0x100 }), { imageName: "k.bin" });
    expect(cString(mem, mem.readU32(r.bootInfo! + 16))).toBe("k.bin");
    expect(kernelCommandLine({ imageName: "k.bin", cmdline: "" })).toBe("k.bin");
  });

  it("is the command line unchanged for API callers that give no name", () => {
    const { mem } = ram();
    const r = loadMultiboot(mem, aoutKernel({ loadAddr: 0x100000, size: 0x100 }), { cmdline: "a b" });
    expect(cString(mem, mem.readU32(r.bootInfo! + 16))).toBe("a b");
    expect(kernelCommandLine({})).toBe("");
  });
});

describe("multiboot information placement", () => {
  it("keeps QEMU's 0x9000 when nothing is loaded there", () => {
    const { mem } = ram();
    const r = loadMultiboot(mem, aoutKernel({ loadAddr: 0x100000, size: 0x100 }));
    expect(r.bootInfo).toBe(0x9000);
    expectClear(mem, r);
  });

  it("moves off a kernel loaded at 0x8000-0xA86C (which used to be refused)", () => {
    const { mem } = ram();
    const image = aoutKernel({ loadAddr: 0x8000, size: 0xa86c - 0x8000 });
    const r = loadMultiboot(mem, image, { imageName: "low.bin", cmdline: "x=1" });
    expect(r.loaded).toEqual([{ gpa: 0x8000, size: 0x286c, fileSize: 0x286c }]);
    expect(mem.read(0x8000, image.length)).toEqual(image);
    expectClear(mem, r);
    expect(cString(mem, mem.readU32(r.bootInfo! + 16))).toBe("low.bin x=1");
    expect(cString(mem, mem.readU32(r.bootInfo! + 64))).toBe("nodevmm");
  });

  it("moves off a module that covers 0x9000", () => {
    const { mem } = ram();
    const r = loadMultiboot(mem, aoutKernel({ loadAddr: 0x7000, size: 0x800 }), {
      modules: [{ data: new Uint8Array(0x3000).fill(0x55), cmdline: "mod one" }],
    });
    expect(r.loaded[1]).toMatchObject({ gpa: 0x8000, size: 0x3000 });
    expectClear(mem, r);
    const mod = mem.readU32(r.bootInfo! + 24);
    expect(cString(mem, mem.readU32(mod + 8))).toBe("mod one");
    expect(mem.readU32(mod)).toBe(0x8000);
  });

  it("goes above the highest loaded byte when the kernel fills conventional memory", () => {
    const { mem } = ram();
    const r = loadMultiboot(mem, aoutKernel({ loadAddr: 0x1000, size: 0x1000, bss: EBDA - 0x2000 }), {
      modules: [{ data: new Uint8Array(0x1800) }],
    });
    const top = Math.max(...r.loaded.map((l) => l.gpa + l.size));
    expect(r.bootInfo).toBeGreaterThanOrEqual(0x100000);
    expect(r.bootInfo).toBeGreaterThanOrEqual(top);
    expectClear(mem, r);
  });

  it("grows to hold a long command line, still clear of the image", () => {
    const { mem } = ram();
    const cmdline = "y".repeat(9000);
    const r = loadMultiboot(mem, aoutKernel({ loadAddr: 0x8000, size: 0x3000 }), { cmdline });
    expect(cString(mem, mem.readU32(r.bootInfo! + 16))).toBe(cmdline);
    const info = r.reserved.find((x) => x.what === "multiboot information")!;
    expect(info.size).toBeGreaterThan(9000);
    expectClear(mem, r);
  });

  it("is a GuestImageError naming it when no RAM is free, nothing written", () => {
    const mem = new GuestMemory();
    const bytes = new Uint8Array(MiB).fill(0xaa);
    mem.addRegion(0, bytes);
    // conventional memory taken by the kernel's bss, and RAM ends at 1 MiB
    const image = aoutKernel({ loadAddr: 0x1000, size: 0x1000, bss: EBDA - 0x2000 });
    expectImageError(() => loadMultiboot(mem, image), bytes, "multiboot information", 16, /no free/);
  });
});
