// The Linux boot protocol loader on synthetic bzImages: a setup header with chosen version, flags and
// fields, and a protected-mode part holding a tiny guest (32-bit entry at 0, 64-bit entry at 0x200)
// that reads the zero page through RSI and reports what it saw on port 0xE9.

import { describe, expect, it } from "vitest";
import {
  BOOT_CS,
  BOOT_DS,
  BOOT_PARAMS,
  BootSetupError,
  DEFAULT_LAYOUT,
  DEFAULT_LINUX_LAYOUT,
  detectFormat,
  E820_RAM,
  E820_RESERVED,
  type E820Entry,
  e820Map,
  GDT_LIMIT,
  hasBzImageHeader,
  type LinuxOptions,
  loadImage,
  loadLinux,
  SETUP_HEADER,
} from "../../lib/boot/index.js";
import { DebugExit } from "../../lib/devices/index.js";
import { createMachine } from "../../lib/vmm/machine.js";
import type { GuestMemory } from "../../lib/vmm/memory.js";
import { bzImage, HDR, payload } from "../support/bzimage.js";
import { unavailable } from "../vmm/available.js";
import { expectImageError } from "./expect-error.js";
import { isFilled, MiB, ram } from "./fixtures.js";

function cString(mem: GuestMemory, gpa: number): string {
  let s = "";
  for (let a = gpa; mem.readU8(a) !== 0; a++) s += String.fromCharCode(mem.readU8(a));
  return s;
}

function readE820(mem: GuestMemory, zp: number): E820Entry[] {
  const out: E820Entry[] = [];
  for (let i = 0; i < mem.readU8(zp + BOOT_PARAMS.e820_entries); i++) {
    const at = zp + BOOT_PARAMS.e820_table + i * 20;
    out.push({
      addr: Number(mem.readU64(at)),
      size: Number(mem.readU64(at + 8)),
      type: mem.readU32(at + 16),
    });
  }
  return out;
}

const load = (mem: GuestMemory, opts: Partial<LinuxOptions> & { kernel?: Uint8Array } = {}) =>
  loadLinux(mem, { kernel: bzImage(), ...opts });

describe("bzImage detection", () => {
  it("recognises 55 AA at 0x1FE with HdrS at 0x202, and auto-loads it as Linux", () => {
    const bz = bzImage();
    expect(hasBzImageHeader(bz)).toBe(true);
    expect(detectFormat(bz)).toBe("linux");
    const noMagic = bz.slice();
    noMagic[0x202] = 0;
    expect(hasBzImageHeader(noMagic)).toBe(false);
    expect(detectFormat(noMagic)).toBe("flat");
    expect(hasBzImageHeader(bz.subarray(0, 0x205))).toBe(false);

    const { mem } = ram(8);
    const initrd = new Uint8Array(0x3000).fill(0x49);
    const r = loadImage(mem, bz, { cmdline: "console=ttyS0", initrd });
    expect(r.format).toBe("linux");
    expect(r.entry.mode).toBe("long");
    expect(cString(mem, r.linux!.cmdline.gpa)).toBe("console=ttyS0");
    expect(mem.read(r.linux!.initrd!.gpa, 0x3000)).toEqual(initrd);
    // flat options do not apply; multiboot modules are refused with a reason
    expect(() => loadImage(ram(8).mem, bz, { modules: [{ data: initrd }] })).toThrow(BootSetupError);
    expect(loadImage(ram(8).mem, bz, { format: "flat" }).format).toBe("flat");
  });
});

describe("loadLinux: zero page", () => {
  it("copies the setup header, writes the loader's fields and leaves the rest of boot_params zero", () => {
    const { mem } = ram(8);
    const bz = bzImage();
    const r = load(mem, { kernel: bz, cmdline: "quiet" });
    const zp = r.linux!.zeroPage;
    expect(zp).toBe(DEFAULT_LAYOUT.bootInfo);
    expect(r.bootInfo).toBe(zp);
    const page = mem.read(zp, 0x1000);
    const hdrEnd = 0x202 + 0x6a;
    const written = new Set<number>();
    for (const f of [
      "type_of_loader",
      "code32_start",
      "ramdisk_image",
      "ramdisk_size",
      "cmd_line_ptr",
    ] as const) {
      for (let i = 0; i < SETUP_HEADER[f].size; i++) written.add(SETUP_HEADER[f].offset + i);
    }
    for (let i = BOOT_PARAMS.hdr; i < hdrEnd; i++) {
      if (!written.has(i)) expect(page[i], `zero page byte ${i.toString(16)}`).toBe(bz[i]);
    }
    expect(mem.readU8(zp + HDR("type_of_loader"))).toBe(0xff);
    expect(mem.readU32(zp + HDR("code32_start"))).toBe(r.linux!.loadAddress);
    expect(mem.readU32(zp + HDR("cmd_line_ptr"))).toBe(DEFAULT_LINUX_LAYOUT.cmdline);
    expect(mem.readU32(zp + HDR("ramdisk_image"))).toBe(0);
    expect(mem.readU32(zp + HDR("ramdisk_size"))).toBe(0);
    // video/console: a headless machine leaves screen_info empty (no VGA console)
    expect(isFilled(page.subarray(0, 0x40), 0)).toBe(true);
    // nothing else of boot_params: EDD, EFI, sentinel, the gap after the header, ext_* fields
    expect(isFilled(page.subarray(0x40, BOOT_PARAMS.alt_mem_k), 0)).toBe(true);
    expect(page[BOOT_PARAMS.sentinel]).toBe(0);
    expect(isFilled(page.subarray(hdrEnd, BOOT_PARAMS.e820_table), 0)).toBe(true);
    const e820End = BOOT_PARAMS.e820_table + r.linux!.e820.length * 20;
    expect(isFilled(page.subarray(e820End), 0)).toBe(true);
    expect(mem.readU32(zp + BOOT_PARAMS.alt_mem_k)).toBe(7 * 1024);
    expect(r.linux!.protocol).toBe("2.15");
    expect(r.linux!.header.setupSize).toBe(5 * 512);
  });

  it("passes the ACPI RSDP address when given", () => {
    const { mem } = ram(8);
    const r = load(mem, { acpiRsdp: 0xf0000 });
    expect(mem.readU64(r.linux!.zeroPage + BOOT_PARAMS.acpi_rsdp_addr)).toBe(0xf0000n);
  });

  it("builds the e820 map from RAM: 0-640K less the EBDA, the ISA hole reserved, 1 MiB to the top", () => {
    const { mem } = ram(64);
    const r = load(mem);
    const want = [
      { addr: 0, size: 0x9fc00, type: E820_RAM },
      { addr: 0x9fc00, size: 0x400, type: E820_RESERVED },
      { addr: 0xa0000, size: 0x60000, type: E820_RESERVED },
      { addr: 0x100000, size: 63 * MiB, type: E820_RAM },
    ];
    expect(r.linux!.e820).toEqual(want);
    expect(readE820(mem, r.linux!.zeroPage)).toEqual(want);
  });

  it("e820Map: high RAM merged above 4 GiB, nothing in the APIC/BIOS window, extra entries cut RAM", () => {
    const regions = [
      { guestPhysAddr: 0, size: 0xc0000000 },
      { guestPhysAddr: 0x140000000, size: 0x40000000 },
      { guestPhysAddr: 0x100000000, size: 0x40000000 },
    ];
    const map = e820Map(regions);
    expect(map).toEqual([
      { addr: 0, size: 0x9fc00, type: E820_RAM },
      { addr: 0x9fc00, size: 0x400, type: E820_RESERVED },
      { addr: 0xa0000, size: 0x60000, type: E820_RESERVED },
      { addr: 0x100000, size: 0xc0000000 - 0x100000, type: E820_RAM },
      { addr: 0x100000000, size: 0x80000000, type: E820_RAM },
    ]);
    // a RAM region reaching into the PC's MMIO window (I/O APIC, LAPIC, BIOS) is cut short of it
    const big = e820Map([{ guestPhysAddr: 0, size: 0x100000000 }]);
    const ramEntries = big.filter((e) => e.type === E820_RAM);
    for (const mmio of [0xfec00000, 0xfee00000, 0xfffff000]) {
      expect(ramEntries.some((e) => mmio >= e.addr && mmio < e.addr + e.size)).toBe(false);
    }
    expect(ramEntries.at(-1)).toEqual({ addr: 0x100000, size: 0xfec00000 - 0x100000, type: E820_RAM });
    // an ACPI table area replaces the RAM under it
    const acpi = e820Map(
      [{ guestPhysAddr: 0, size: 16 * MiB }],
      [{ addr: 0xe0000 + 0x20000, size: 0x10000, type: 3 }],
    );
    expect(acpi).toContainEqual({ addr: 0x100000, size: 0x10000, type: 3 });
    expect(acpi).toContainEqual({ addr: 0x110000, size: 16 * MiB - 0x110000, type: E820_RAM });
    // no two entries overlap
    for (const m of [map, big, acpi]) {
      for (let i = 1; i < m.length; i++)
        expect(m[i]!.addr).toBeGreaterThanOrEqual(m[i - 1]!.addr + m[i - 1]!.size);
    }
  });
});

describe("loadLinux: command line, kernel and initrd placement", () => {
  it("writes the command line NUL-terminated at cmd_line_ptr; exactly cmdline_size bytes is fine", () => {
    const { mem } = ram(8);
    const cmdline = "x".repeat(0x40);
    const r = load(mem, { kernel: bzImage({ cmdlineSize: 0x40 }), cmdline });
    const ptr = mem.readU32(r.linux!.zeroPage + HDR("cmd_line_ptr"));
    expect(ptr).toBe(0x20000);
    expect(cString(mem, ptr)).toBe(cmdline);
    expect(r.reserved).toContainEqual({ gpa: 0x20000, size: 0x41, what: "command line" });
    // no command line: an empty string, still pointed at
    const r2 = load(ram(8).mem);
    expect(r2.linux!.cmdline).toEqual({ gpa: 0x20000, size: 1 });
  });

  it("loads a relocatable kernel at its aligned pref_address, else at 1 MiB", () => {
    let { mem } = ram(8);
    const bz = bzImage({ prefAddress: 0x200000, kernelAlignment: 0x200000 });
    let r = load(mem, { kernel: bz });
    expect(r.linux!.loadAddress).toBe(0x200000);
    expect(r.linux!.runtimeStart).toBe(0x200000);
    expect(mem.read(0x200000, bz.length - 5 * 512)).toEqual(bz.subarray(5 * 512));
    expect(r.loaded).toEqual([{ gpa: 0x200000, size: 0x1000, fileSize: 0x1000 }]);
    // pref_address not a multiple of kernel_alignment: 1 MiB; the kernel will run at pref_address
    ({ mem } = ram(8));
    r = load(mem, { kernel: bzImage({ prefAddress: 0x300000, kernelAlignment: 0x200000 }) });
    expect(r.linux!.loadAddress).toBe(0x100000);
    expect(r.linux!.runtimeStart).toBe(0x300000);
    expect(mem.read(0x100000, 0x1000)).toEqual(payload());
    // not relocatable: 1 MiB
    ({ mem } = ram(8));
    r = load(mem, { kernel: bzImage({ relocatable: false }) });
    expect(r.linux!.loadAddress).toBe(0x100000);
    // Debian's numbers: 16 MiB preferred, 2 MiB alignment, ~64 MiB init_size
    ({ mem } = ram(96));
    r = load(mem, { kernel: bzImage({ prefAddress: 0x1000000, initSize: 0x3f98000 }) });
    expect(r.linux!.loadAddress).toBe(0x1000000);
    expect(r.linux!.runtimeStart + r.linux!.initSize).toBe(0x1000000 + 0x3f98000);
  });

  it("puts the initrd page-aligned as high as initrd_addr_max and RAM allow, clear of the kernel", () => {
    const initrd = new Uint8Array(0x12345);
    for (let i = 0; i < initrd.length; i++) initrd[i] = (i * 7) & 0xff;
    // RAM top is the limit
    let { mem } = ram(16);
    let r = load(mem, { initrd });
    let at = r.linux!.initrd!;
    expect(at.size).toBe(initrd.length);
    expect(at.gpa % 0x1000).toBe(0);
    expect(at.gpa + at.size).toBeLessThanOrEqual(16 * MiB);
    expect(at.gpa + at.size).toBeGreaterThan(16 * MiB - 0x1000);
    expect(mem.read(at.gpa, at.size)).toEqual(initrd);
    expect(mem.readU32(r.linux!.zeroPage + HDR("ramdisk_image"))).toBe(at.gpa);
    expect(mem.readU32(r.linux!.zeroPage + HDR("ramdisk_size"))).toBe(initrd.length);
    // initrd_addr_max is the limit (the highest byte the initrd may occupy)
    ({ mem } = ram(16));
    r = load(mem, { kernel: bzImage({ initrdAddrMax: 0x9fffff }), initrd });
    at = r.linux!.initrd!;
    expect(at.gpa + at.size - 1).toBeLessThanOrEqual(0x9fffff);
    expect(at.gpa).toBe((0xa00000 - 0x13000) & ~0xfff);
    // the space under the limit is the kernel's: the initrd goes below it
    ({ mem } = ram(16));
    r = load(mem, { kernel: bzImage({ prefAddress: 0x800000, initSize: 0x800000 }), initrd });
    at = r.linux!.initrd!;
    expect(at.gpa + at.size).toBeLessThanOrEqual(0x800000);
    expect(at.gpa).toBeGreaterThanOrEqual(0x100000 + 0x1000);
  });
});

describe("loadLinux: entry state", () => {
  it("64-bit protocol: long mode on an identity map of 4 GiB, GDT with __BOOT_CS/__BOOT_DS, RSI = zero page", () => {
    const { mem } = ram(8);
    const r = load(mem);
    const e = r.entry;
    const load64 = r.linux!.loadAddress + 0x200;
    expect(e.mode).toBe("long");
    expect(e.regs.rip).toBe(BigInt(load64));
    expect(e.regs.rsi).toBe(BigInt(r.linux!.zeroPage));
    expect(e.regs.rbp ?? 0n).toBe(0n);
    expect(e.regs.rdi ?? 0n).toBe(0n);
    expect(e.regs.rbx ?? 0n).toBe(0n);
    expect(e.regs.rflags! & 0x200n).toBe(0n); // interrupts off
    expect(e.sregs.cs).toMatchObject({ selector: BOOT_CS, l: true, db: false, base: 0n });
    for (const s of ["ds", "es", "ss"] as const) {
      expect(e.sregs[s]).toMatchObject({ selector: BOOT_DS, base: 0n, limit: 0xffffffff });
    }
    expect(e.sregs.cr0 & (1n << 31n)).not.toBe(0n);
    expect(e.sregs.cr4 & (1n << 5n)).not.toBe(0n);
    expect(e.sregs.efer & 0x500n).toBe(0x500n);
    expect(e.sregs.gdt).toEqual({ base: BigInt(DEFAULT_LAYOUT.gdt), limit: GDT_LIMIT });
    // the GDT in memory: 0x10 long-mode code, 0x18 data, both flat
    expect(mem.readU64(DEFAULT_LAYOUT.gdt + BOOT_CS)).toBe(0x00af9b000000ffffn);
    expect(mem.readU64(DEFAULT_LAYOUT.gdt + BOOT_DS)).toBe(0x00cf93000000ffffn);
    // walk the page tables: every 2 MiB page of the low 4 GiB maps to itself
    const cr3 = Number(e.sregs.cr3);
    expect(cr3).toBe(DEFAULT_LAYOUT.pageTables);
    const walk = (va: number): number | undefined => {
      const pml4e = mem.readU64(cr3 + Math.floor(va / 2 ** 39) * 8);
      if (!(pml4e & 1n)) return undefined;
      const pdpte = mem.readU64(Number(pml4e & ~0xfffn) + (Math.floor(va / 2 ** 30) % 512) * 8);
      if (!(pdpte & 1n)) return undefined;
      const pde = mem.readU64(Number(pdpte & ~0xfffn) + (Math.floor(va / 2 ** 21) % 512) * 8);
      if (!(pde & 1n) || !(pde & 0x80n)) return undefined;
      return Number(pde & ~0x1fffffn) + (va % 2 ** 21);
    };
    for (const va of [
      0,
      r.linux!.zeroPage,
      load64,
      0x20000,
      0x7fffffff,
      0xfec00000,
      0xfee00000,
      0xffffffff,
    ]) {
      expect(walk(va)).toBe(va);
    }
    for (let va = 0; va < 2 ** 32; va += 2 ** 21) {
      if (walk(va) !== va) expect.fail(`${va.toString(16)} is not identity-mapped`);
    }
  });

  it("32-bit protocol for kernels without XLF_KERNEL_64: flat protected mode, EIP = code32_start", () => {
    for (const bz of [bzImage({ xloadflags: 0 }), bzImage({ version: 0x020b, xloadflags: 0xffff })]) {
      const { mem } = ram(8);
      const r = load(mem, { kernel: bz });
      const e = r.entry;
      expect(e.mode).toBe("protected");
      expect(e.regs.rip).toBe(BigInt(mem.readU32(r.linux!.zeroPage + HDR("code32_start"))));
      expect(e.regs.rip).toBe(BigInt(r.linux!.loadAddress));
      expect(e.regs.rsi).toBe(BigInt(r.linux!.zeroPage));
      expect(e.sregs.cs).toMatchObject({
        selector: BOOT_CS,
        db: true,
        l: false,
        base: 0n,
        limit: 0xffffffff,
      });
      expect(e.sregs.ds).toMatchObject({ selector: BOOT_DS, base: 0n, limit: 0xffffffff });
      expect(e.sregs.cr0 & 1n).toBe(1n);
      expect(e.sregs.cr0 & (1n << 31n)).toBe(0n);
      expect(e.sregs.efer).toBe(0n);
      expect(mem.readU64(DEFAULT_LAYOUT.gdt + BOOT_CS)).toBe(0x00cf9b000000ffffn);
      // no page tables written in protected mode
      expect(r.reserved.map((x) => x.what)).not.toContain("page tables");
    }
    // the 32-bit protocol on request, also for a 64-bit kernel
    expect(load(ram(8).mem, { mode: "protected" }).entry.regs.rip).toBe(0x200000n);
  });
});

describe("loadLinux: refusals name the field and leave memory untouched", () => {
  const good = bzImage();
  const cases: [string, () => Uint8Array, string, number, RegExp, Partial<LinuxOptions>?][] = [
    [
      "protocol older than 2.06",
      () => bzImage({ version: 0x0205 }),
      "version",
      0x206,
      /2\.05 is older than 2\.06/,
    ],
    ["bad boot_flag", () => good.slice().fill(0, 0x1fe, 0x200), "boot_flag", 0x1fe, /0xaa55/],
    ["no HdrS", () => good.slice().fill(0x20, 0x202, 0x206), "header", 0x202, /HdrS/],
    ["truncated setup header", () => good.slice(0, 0x22e), "initrd_addr_max", 0x22c, /truncated/],
    ["file ending in the boot sector", () => good.slice(0, 0x1ff), "boot_flag", 0x1fe, /truncated/],
    ["short header (jump byte)", () => bzImage({ jumpByte: 0x40 }), "jump", 0x200, /before init_size/],
    [
      "setup_sects beyond the file",
      () => bzImage({ setupSects: 40 }).slice(0, 30 * 512),
      "setup_sects",
      0x1f1,
      /beyond the end of the file/,
    ],
    [
      "setup_sects too large for syssize",
      () => {
        const b = bzImage();
        b[0x1f1] = 5; // one sector more than the file has of setup: the kernel looks short
        return b;
      },
      "syssize",
      0x1f4,
      /setup_sects is wrong/,
    ],
    ["truncated kernel", () => good.slice(0, good.length - 0x100), "syssize", 0x1f4, /truncated/],
    ["nothing after the setup", () => good.slice(0, 5 * 512), "syssize", 0x1f4, /no protected-mode kernel/],
    ["zImage", () => bzImage({ loadflags: 0 }), "loadflags", 0x211, /zImage/],
    [
      "odd kernel_alignment",
      () => bzImage({ kernelAlignment: 0x300000 }),
      "kernel_alignment",
      0x230,
      /power of two/,
    ],
    [
      "kernel does not fit in RAM",
      () => bzImage({ initSize: 0x10000000 }),
      "init_size",
      0x260,
      /at least 258 MiB/,
    ],
    [
      "64-bit entry asked of a 32-bit kernel",
      () => bzImage({ xloadflags: 0 }),
      "xloadflags",
      0x236,
      /XLF_KERNEL_64/,
      { mode: "long" },
    ],
    [
      "initrd too large",
      () => good,
      "initrd_addr_max",
      0x22c,
      /does not fit/,
      { initrd: new Uint8Array(8 * MiB) },
    ],
    [
      "initrd above initrd_addr_max",
      () => bzImage({ initrdAddrMax: 0x1fffff }),
      "initrd_addr_max",
      0x22c,
      /initrd_addr_max \+ 1 = 0x200000/,
      { initrd: new Uint8Array(0x101000) },
    ],
    [
      "command line longer than cmdline_size",
      () => bzImage({ cmdlineSize: 16 }),
      "cmdline_size",
      0x238,
      /17 bytes; this kernel takes at most 16/,
      { cmdline: "console=ttyS0 ab" + "c" },
    ],
  ];
  for (const [what, image, field, offset, message, opts] of cases) {
    it(what, () => {
      const { mem, bytes } = ram(8);
      expectImageError(() => loadLinux(mem, { ...opts, kernel: image() }), bytes, field, offset, message);
    });
  }

  it("configuration problems are BootSetupErrors", () => {
    expect(() => loadLinux(ram(8).mem, { kernel: bzImage(), cmdline: "a\0b" })).toThrow(BootSetupError);
    expect(() =>
      loadLinux(ram(8).mem, {
        kernel: bzImage(),
        layout: { cmdline: 0x9a000 - 0x10 },
        cmdline: "0123456789abcdef0123",
      }),
    ).toThrow(/command line .* overlaps the page tables/);
    expect(() => loadLinux(ram(8).mem, { kernel: "bzImage" as never })).toThrow(BootSetupError);
  });
});

const softWhy = unavailable("soft");
describe.skipIf(softWhy !== undefined)("a synthetic bzImage runs on the soft backend", () => {
  async function run(opts: { kernel: Uint8Array; auto?: boolean; mode?: "long" | "protected" }) {
    const vm = await createMachine({ memoryMiB: 16, backend: "soft" });
    try {
      vm.addDevice(new DebugExit({ port: 0xf4 }));
      const out: number[] = [];
      vm.io.onOut(0xe9, (_p, _s, v) => out.push(v & 0xff));
      const initrd = Uint8Array.of(0x49, 0x4e, 0x49, 0x54);
      const r = opts.auto
        ? vm.load(opts.kernel, { cmdline: "console=ttyS0", initrd })
        : loadLinux(vm.memory, {
            kernel: opts.kernel,
            cmdline: "console=ttyS0",
            initrd,
            ...(opts.mode ? { mode: opts.mode } : {}),
          });
      if (!opts.auto) vm.applyEntry(r.entry);
      const result = vm.runSync({ timeoutMs: 20_000 });
      return { result, out, r, regs: vm.vcpu(0).getRegs() };
    } finally {
      vm.close();
    }
  }

  it("64-bit entry: the payload reads the zero page through RSI and sees long mode with paging", async () => {
    const { result, out, r } = await run({ kernel: bzImage(), auto: true });
    expect(result).toMatchObject({ reason: "debug-exit", exitCode: (0x2a << 1) | 1 });
    expect(r.format).toBe("linux");
    expect(out).toEqual([0x36, BOOT_CS, BOOT_DS, r.linux!.e820.length, 0xff, "c".charCodeAt(0), 0x49, 0x80]);
  });

  it("32-bit entry: the same payload at code32_start in flat protected mode without paging", async () => {
    const { result, out, r } = await run({ kernel: bzImage({ xloadflags: 0 }) });
    expect(result).toMatchObject({ reason: "debug-exit", exitCode: (0x2a << 1) | 1 });
    expect(r.entry.mode).toBe("protected");
    expect(out).toEqual([0x33, BOOT_CS, BOOT_DS, 4, 0xff, "c".charCodeAt(0), 0x49, 0x00]);
  });
});
