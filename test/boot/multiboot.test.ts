import { describe, expect, it } from "vitest";
import {
  DEFAULT_LAYOUT,
  loadMultiboot,
  MBI_FLAG_CMDLINE,
  MBI_FLAG_LOADER_NAME,
  MBI_FLAG_MEMORY,
  MBI_FLAG_MMAP,
  MBI_FLAG_MODS,
  MULTIBOOT_BOOTLOADER_MAGIC,
  multibootMemoryMap,
} from "../../lib/boot/index.js";
import { GuestMemory } from "../../lib/vmm/memory.js";
import { expectImageError } from "./expect-error.js";
import { aoutKernel, buildElf, isFilled, MiB, multibootHeader, ram, setU32 } from "./fixtures.js";

function cString(mem: GuestMemory, gpa: number): string {
  let s = "";
  for (let a = gpa; mem.readU8(a) !== 0; a++) s += String.fromCharCode(mem.readU8(a));
  return s;
}

/** Reads the multiboot information structure back the way a kernel would. */
function readInfo(mem: GuestMemory, at: number) {
  const mmap: { base: bigint; length: bigint; type: number }[] = [];
  const mmapAddr = mem.readU32(at + 48);
  for (let p = mmapAddr; p < mmapAddr + mem.readU32(at + 44); p += mem.readU32(p) + 4) {
    mmap.push({ base: mem.readU64(p + 4), length: mem.readU64(p + 12), type: mem.readU32(p + 20) });
  }
  const mods = [];
  for (let i = 0; i < mem.readU32(at + 20); i++) {
    const m = mem.readU32(at + 24) + i * 16;
    mods.push({ start: mem.readU32(m), end: mem.readU32(m + 4), cmdline: cString(mem, mem.readU32(m + 8)) });
  }
  return {
    flags: mem.readU32(at),
    memLower: mem.readU32(at + 4),
    memUpper: mem.readU32(at + 8),
    cmdline: cString(mem, mem.readU32(at + 16)),
    loader: cString(mem, mem.readU32(at + 64)),
    mmap,
    mods,
  };
}

describe("loadMultiboot", () => {
  it("loads an a.out-kludge kernel at load_addr, zeroes to bss_end_addr, enters with EAX/EBX", () => {
    const { mem } = ram(8);
    const image = aoutKernel({ loadAddr: 0x100000, size: 0x300, bss: 0x200, entry: 0x100040 });
    const r = loadMultiboot(mem, image, { cmdline: "root=/dev/vda console=ttyS0" });
    expect(r.format).toBe("multiboot");
    expect(mem.read(0x100000, 0x300)).toEqual(image);
    expect(isFilled(mem.view(0x100300, 0x200), 0)).toBe(true);
    expect(mem.readU8(0x100500)).toBe(0xaa);
    expect(r.entry.mode).toBe("protected");
    expect(r.entry.regs.rip).toBe(0x100040n);
    expect(r.entry.regs.rax).toBe(BigInt(MULTIBOOT_BOOTLOADER_MAGIC));
    expect(r.entry.regs.rbx).toBe(BigInt(DEFAULT_LAYOUT.bootInfo));
    expect(r.bootInfo).toBe(DEFAULT_LAYOUT.bootInfo);
    expect(r.entry.sregs.cr0 & 1n).toBe(1n);
    expect(r.entry.sregs.cs.db && !r.entry.sregs.cs.l).toBe(true);
    expect(r.entry.regs.rflags! & 0x200n).toBe(0n); // IF clear, as the spec requires

    const info = readInfo(mem, Number(r.entry.regs.rbx));
    const want = MBI_FLAG_MEMORY | MBI_FLAG_CMDLINE | MBI_FLAG_MODS | MBI_FLAG_MMAP | MBI_FLAG_LOADER_NAME;
    expect(info.flags & want).toBe(want);
    expect(info.memLower).toBe(640);
    expect(info.memUpper).toBe(7 * 1024);
    expect(info.cmdline).toBe("root=/dev/vda console=ttyS0");
    expect(info.loader).toBe("nodevmm");
    expect(info.mmap).toEqual([
      { base: 0n, length: 0x9fc00n, type: 1 },
      { base: 0x9fc00n, length: 0x400n, type: 2 },
      { base: 0x100000n, length: BigInt(7 * MiB), type: 1 },
    ]);
    expect(info.mods).toEqual([]);
  });

  it("with load_end_addr = 0 loads to the end of the file; header may sit after load start", () => {
    const { mem } = ram();
    const image = aoutKernel({
      loadAddr: 0x200000,
      size: 0x800,
      headerOffset: 0x400,
      fields: { load_end_addr: 0, bss_end_addr: 0 },
    });
    const r = loadMultiboot(mem, image);
    expect(r.loaded).toEqual([{ gpa: 0x200000, size: 0x800, fileSize: 0x800 }]);
    expect(mem.read(0x200000, 0x800)).toEqual(image);
  });

  it("loads an ELF32 kernel by its program headers and places modules page-aligned after it", () => {
    const { mem } = ram(8);
    const body = new Uint8Array(0x1234).fill(0x5a);
    const elf = buildElf({
      bits: 32,
      entry: 0x100000,
      prefix: multibootHeader(0x3),
      segments: [{ vaddr: 0x100000, data: body, memsz: 0x2000 }],
    });
    const modA = new Uint8Array(0x1801).fill(1);
    const modB = new Uint8Array(10).fill(2);
    const r = loadMultiboot(mem, elf, {
      cmdline: "k",
      modules: [{ data: modA, cmdline: "initrd" }, { data: modB }],
      bootLoaderName: "test loader",
    });
    expect(r.entry.regs.rip).toBe(0x100000n);
    expect(mem.read(0x100000, body.length)).toEqual(body);
    const info = readInfo(mem, r.bootInfo!);
    expect(info.mods).toEqual([
      { start: 0x102000, end: 0x103801, cmdline: "initrd" },
      { start: 0x104000, end: 0x10400a, cmdline: "" },
    ]);
    expect(mem.read(0x102000, modA.length)).toEqual(modA);
    expect(mem.read(0x104000, modB.length)).toEqual(modB);
    expect(info.loader).toBe("test loader");
    expect(info.cmdline).toBe("k");
  });

  it("accepts the video-mode request (flag 2) and boots without a framebuffer, as QEMU does", () => {
    const { mem } = ram();
    const img = new Uint8Array(0x100);
    img.set(multibootHeader(0x10004, [0x100010, 0x100000, 0, 0, 0x100000]), 16);
    const r = loadMultiboot(mem, img);
    expect(r.entry.regs.rip).toBe(0x100000n);
    expect(mem.readU32(r.bootInfo!) & (1 << 11)).toBe(0); // no VBE info claimed
  });

  it("builds the memory map from RAM regions, leaving out the EBDA and the 640K-1M hole", () => {
    expect(
      multibootMemoryMap([
        { guestPhysAddr: 0x100000, size: 0x1000000 },
        { guestPhysAddr: 0, size: 0xa0000 },
      ]),
    ).toEqual([
      { base: 0, length: 0x9fc00, type: 1 },
      { base: 0x9fc00, length: 0x400, type: 2 },
      { base: 0x100000, length: 0x1000000, type: 1 },
    ]);
    const split = new GuestMemory();
    split.addRegion(0, new Uint8Array(0xa0000));
    split.addRegion(0x100000, new Uint8Array(2 * MiB));
    const r = loadMultiboot(split, aoutKernel({ loadAddr: 0x100000, size: 0x100 }));
    const info = readInfo(split, r.bootInfo!);
    expect([info.memLower, info.memUpper]).toEqual([640, 2048]);
  });
});

describe("loadMultiboot rejects bad images before writing", () => {
  const at = 16; // aoutKernel's header offset
  const k = (o: Parameters<typeof aoutKernel>[0]) => aoutKernel(o);
  const cases: [string, Uint8Array, string, number, RegExp][] = [
    ["no header", new Uint8Array(0x3000), "magic", 0, /no multiboot header/],
    [
      "header beyond the first 8 KiB",
      (() => {
        const img = new Uint8Array(0x3000);
        img.set(multibootHeader(0x10000, [0, 0, 0, 0, 0]), 0x2000);
        return img;
      })(),
      "magic",
      0,
      /first 8 KiB/,
    ],
    [
      "bad checksum",
      setU32(k({ loadAddr: 0x100000, size: 0x100 }), at + 8, 0x1234),
      "checksum",
      at + 8,
      /checksum/,
    ],
    [
      "unknown required flag",
      (() => {
        const img = new Uint8Array(0x100);
        img.set(multibootHeader(0x10 | 0x10000, [0x100010, 0x100000, 0, 0, 0x100000]), at);
        return img;
      })(),
      "flags",
      at + 4,
      /0x10/,
    ],
    [
      "neither a.out addresses nor ELF",
      (() => {
        const img = new Uint8Array(0x100);
        img.set(multibootHeader(0x3), at);
        return img;
      })(),
      "flags",
      at + 4,
      /not ELF/,
    ],
    [
      "a.out fields truncated",
      (() => {
        const img = new Uint8Array(at + 20);
        img.set(multibootHeader(0x10000, [0x100010, 0x100000]), at);
        return img;
      })(),
      "header_addr",
      at + 12,
      /inside the a.out/,
    ],
    [
      "load_addr above header_addr",
      k({ loadAddr: 0x100000, size: 0x100, fields: { load_addr: 0x100020 } }),
      "load_addr",
      at + 16,
      /above header_addr/,
    ],
    [
      "load start before the file",
      k({ loadAddr: 0x100000, size: 0x100, fields: { load_addr: 0xfff00 } }),
      "header_addr",
      at + 12,
      /before the file start/,
    ],
    [
      "load_end_addr below load_addr",
      k({ loadAddr: 0x100000, size: 0x100, fields: { load_end_addr: 0xff000 } }),
      "load_end_addr",
      at + 20,
      /below load_addr/,
    ],
    [
      "load_end_addr past the file (truncated)",
      k({ loadAddr: 0x100000, size: 0x100, fields: { load_end_addr: 0x100200 } }),
      "load_end_addr",
      at + 20,
      /truncated/,
    ],
    [
      "bss_end_addr inside the text",
      k({ loadAddr: 0x100000, size: 0x100, fields: { bss_end_addr: 0x100080 } }),
      "bss_end_addr",
      at + 24,
      /below the end/,
    ],
    [
      "absurd bss",
      k({ loadAddr: 0x100000, size: 0x100, fields: { bss_end_addr: 0xf0000000 } }),
      "bss_end_addr",
      at + 24,
      /larger than guest RAM/,
    ],
    [
      "entry outside the kernel",
      k({ loadAddr: 0x100000, size: 0x100, entry: 0x300000 }),
      "entry_addr",
      at + 28,
      /outside the loaded kernel/,
    ],
    ["kernel outside RAM", k({ loadAddr: 0x3fff00, size: 0x200 }), "load_addr", at + 16, /outside guest RAM/],
    [
      "ELF64 without a.out addresses",
      buildElf({
        bits: 64,
        entry: 0x100000,
        prefix: multibootHeader(0),
        segments: [{ vaddr: 0x100000, data: new Uint8Array(16) }],
      }),
      "e_ident[EI_CLASS]",
      4,
      /ELF64/,
    ],
    [
      "ELF kernel with a bad segment",
      setU32(
        buildElf({
          bits: 32,
          entry: 0x100000,
          prefix: multibootHeader(0),
          segments: [{ vaddr: 0x100000, data: new Uint8Array(16) }],
        }),
        52 + 16,
        32,
      ),
      "ph[0].p_filesz",
      52 + 16,
      /exceeds memory size/,
    ],
  ];
  for (const [name, image, field, offset, message] of cases) {
    it(name, () => {
      const { mem, bytes } = ram();
      expectImageError(() => loadMultiboot(mem, image), bytes, field, offset, message);
    });
  }

  it("a module that does not fit RAM is named, nothing written", () => {
    const { mem, bytes } = ram();
    expectImageError(
      () =>
        loadMultiboot(mem, aoutKernel({ loadAddr: 0x100000, size: 0x100 }), {
          modules: [{ data: new Uint8Array(4 * MiB) }],
        }),
      bytes,
      "modules[0]",
      0,
      /outside guest RAM|larger than guest RAM/,
    );
  });

  it("a kernel over an information address the caller names is refused, nothing written", () => {
    const { mem, bytes } = ram();
    expectImageError(
      () => loadMultiboot(mem, k({ loadAddr: 0x8f00, size: 0x200 }), { layout: { bootInfo: 0x9000 } }),
      bytes,
      "load_addr",
      at + 16,
      /multiboot information/,
    );
  });

  it("a command line no free RAM can hold is a GuestImageError, nothing written", () => {
    const { mem, bytes } = ram();
    expectImageError(
      () =>
        loadMultiboot(mem, aoutKernel({ loadAddr: 0x100000, size: 0x100 }), { cmdline: "x".repeat(4 * MiB) }),
      bytes,
      "multiboot information",
      at,
      /no free 32-bit RAM/,
    );
  });
});
