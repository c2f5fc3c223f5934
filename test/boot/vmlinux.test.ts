// Booting Linux without the kernel's decompressor in the guest: a bzImage's payload found and
// decompressed on the host and its vmlinux entered at phys_startup_64, and a vmlinux ELF given as
// the kernel. Synthetic kernels (vmlinux-fixtures.ts) check the zero page and report on port 0xE9;
// Debian's kernel, when the nested-KVM lane has cached it, is unpacked and loaded (not run).

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BOOT_CS,
  BOOT_DS,
  BOOT_PARAMS,
  BootSetupError,
  CAN_USE_HEAP,
  decompressPayload,
  describeLinuxBoot,
  detectFormat,
  E820_ACPI,
  findBzImagePayload,
  GuestImageError,
  isLinuxVmlinux,
  type LinuxOptions,
  LOADED_HIGH,
  loadImage,
  loadLinux,
  PAYLOAD_MAGICS,
  parseLinuxHeader,
  parseVmlinux,
  payloadFormat,
  XLF_KERNEL_64,
} from "../../lib/boot/index.js";
import { DebugExit } from "../../lib/devices/index.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { backendMissing, bin, root } from "../cli/helpers.js";
import { bzImage, HDR } from "../support/bzimage.js";
import { unavailable } from "../vmm/available.js";
import { expectImageError } from "./expect-error.js";
import { MiB, ram } from "./fixtures.js";
import {
  BSS_PHYS,
  BSS_SIZE,
  gzipped,
  KERNEL_NOTES,
  KERNEL_PHYS,
  napiLzmaWhy,
  PM_HEAD,
  VMLINUX_CODE,
  viaTool,
  vmlinux,
  withSize,
  wrap,
  xzKernel,
} from "./vmlinux-fixtures.js";

const elf = vmlinux();
const gzBz = wrap(gzipped(elf));
const xzStream = xzKernel(elf);
const xzWhy = typeof xzStream === "string" ? xzStream : undefined;
const xzBz = typeof xzStream === "string" ? undefined : wrap(withSize(xzStream, elf.length));

describe("the bzImage payload", () => {
  it("is found through payload_offset/payload_length and told by its magic", () => {
    const h = parseLinuxHeader(gzBz);
    const found = findBzImagePayload(gzBz, h);
    expect(found.ok).toBe(true);
    if (!found.ok) return;
    expect(found.payload.format).toBe("gzip");
    expect(found.payload.fileOffset).toBe(h.setupSize + PM_HEAD);
    expect(found.payload.data).toEqual(gzipped(elf));
    // gzip's last 4 bytes are its own ISIZE; the stream is the whole payload
    expect(found.payload.decompressedSize).toBe(elf.length);
    expect(found.payload.stream.length).toBe(found.payload.data.length);
    for (const m of PAYLOAD_MAGICS)
      expect(payloadFormat(Uint8Array.from([...m.bytes, 0, 0, 0]))).toBe(m.format);
    expect(payloadFormat(Uint8Array.of(1, 2, 3, 4))).toBeUndefined();
  });

  it("formats other than gzip have the size appended after the stream: it is split off", () => {
    const stream = Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 9, 9, 9);
    const found = findBzImagePayload(wrap(withSize(stream, 0x1234567)), parseLinuxHeader(wrap(stream)));
    expect(found).toMatchObject({ ok: true, payload: { format: "zstd", decompressedSize: 0x1234567 } });
    if (found.ok) expect(found.payload.stream).toEqual(stream);
  });

  it("a bzImage without a usable payload gives a reason, not an error", () => {
    const none = bzImage();
    expect(findBzImagePayload(none, parseLinuxHeader(none))).toEqual({
      ok: false,
      reason: expect.stringMatching(/payload_length is 0/),
    });
    const old = bzImage({ version: 0x0207 });
    expect(findBzImagePayload(old, parseLinuxHeader(old))).toMatchObject({
      ok: false,
      reason: /older than 2.08/,
    });
    const unknown = wrap(Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0));
    expect(findBzImagePayload(unknown, parseLinuxHeader(unknown))).toMatchObject({
      ok: false,
      reason: /not one this loader knows \(starts de ad be ef/,
    });
    const past = gzBz.slice();
    new DataView(past.buffer).setUint32(0x24c, gzBz.length, true);
    expect(findBzImagePayload(past, parseLinuxHeader(past))).toMatchObject({
      ok: false,
      reason: /past the end/,
    });
  });
});

describe("host decompression", () => {
  const payloadOf = (bz: Uint8Array) => {
    const found = findBzImagePayload(bz, parseLinuxHeader(bz));
    if (!found.ok) throw new Error(found.reason);
    return found.payload;
  };

  it("gzip with node:zlib; the output must have the size the kernel recorded", () => {
    const out = decompressPayload(payloadOf(gzBz));
    expect(out).toMatchObject({ ok: true, via: "node:zlib" });
    if (out.ok) expect(out.data).toEqual(elf);
    // a stream whose ISIZE disagrees with what it holds is corrupt to zlib (or to the size check)
    const bad = gzipped(elf);
    bad[bad.length - 1] ^= 1;
    expect(decompressPayload(payloadOf(wrap(bad)))).toMatchObject({ ok: false, reason: /gzip payload/ });
    const trash = gzipped(elf);
    trash.fill(0x55, 20, 60);
    expect(decompressPayload(payloadOf(wrap(trash)))).toMatchObject({
      ok: false,
      reason: /does not decompress/,
    });
  });

  it.skipIf(xzWhy !== undefined)(
    `xz (BCJ x86 + LZMA2, as the kernel packs it) with the xz tool ${xzWhy ?? ""}`,
    () => {
      const out = decompressPayload(payloadOf(xzBz!), { use: ["tool"] });
      expect(out).toMatchObject({ ok: true, via: "xz" });
      if (out.ok) expect(out.data).toEqual(elf);
      // a size that disagrees with the stream is caught
      const wrong = wrap(withSize(xzStream as Uint8Array, elf.length + 1));
      expect(decompressPayload(payloadOf(wrong), { use: ["tool"] })).toMatchObject({
        ok: false,
        reason: /decompressed to \d+ bytes, but the kernel recorded/,
      });
    },
  );

  const napiWhy = napiLzmaWhy() ?? xzWhy;
  it.skipIf(napiWhy !== undefined)(`xz in-process with @napi-rs/lzma ${napiWhy ?? ""}`, () => {
    const out = decompressPayload(payloadOf(xzBz!), { use: ["native"] });
    expect(out).toMatchObject({ ok: true, via: "@napi-rs/lzma" });
    if (out.ok) expect(out.data).toEqual(elf);
  });

  it.skipIf(napiLzmaWhy() === undefined)(
    "without @napi-rs/lzma and tools, xz is not decompressed, and the reason says why",
    () => {
      const p = payloadOf(wrap(withSize(Uint8Array.of(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 1), 5)));
      expect(decompressPayload(p, { use: ["native"] })).toMatchObject({
        ok: false,
        reason: /no decompressor for xz on this host \(@napi-rs\/lzma cannot be loaded/,
      });
    },
  );

  const zstd = viaTool("zstd", ["-c", "-q"], elf);
  it.skipIf(typeof zstd === "string")(
    `zstd, in-process where Node has it, else the zstd tool ${typeof zstd === "string" ? zstd : ""}`,
    () => {
      const out = decompressPayload(payloadOf(wrap(withSize(zstd as Uint8Array, elf.length))));
      expect(out).toMatchObject({ ok: true, via: expect.stringMatching(/^(node:zlib|zstd)$/) });
      if (out.ok) expect(out.data).toEqual(elf);
    },
  );
});

/** A parse that must fail on `field` (no guest memory involved). */
const parseError = (load: () => unknown, field: string, offset: number, message: RegExp) =>
  expectImageError(load, new Uint8Array(1).fill(0xaa), field, offset, message);

describe("vmlinux ELF: the rule that makes an ELF a Linux kernel", () => {
  it("x86_64 ET_EXEC with a Linux note and a physical entry at or above 1 MiB", () => {
    expect(isLinuxVmlinux(elf)).toBe(true);
    expect(detectFormat(elf)).toBe("linux");
    const without = (name: string) => vmlinux({ notes: KERNEL_NOTES.filter((n) => n.name !== name) });
    // Xen's PVH note alone does not make a Linux kernel (FreeBSD has one too)
    expect(isLinuxVmlinux(without("Linux"))).toBe(false);
    expect(detectFormat(without("Linux"))).toBe("elf");
    expect(isLinuxVmlinux(without("Xen"))).toBe(true);
    expect(isLinuxVmlinux(vmlinux({ type: 3 }))).toBe(false); // ET_DYN
    expect(isLinuxVmlinux(vmlinux({ machine: 3 }))).toBe(false);
    // a virtual e_entry is a higher-half ELF, not the kernel's phys_startup_64
    expect(isLinuxVmlinux(vmlinux({ entry: 0xffffffff81000000n }))).toBe(false);
    expect(isLinuxVmlinux(elf.subarray(0, 40))).toBe(false);
  });

  it("parseVmlinux: segments at p_paddr, entry physical (or translated from a virtual one)", () => {
    const vm = parseVmlinux(elf);
    expect(vm.entry).toBe(KERNEL_PHYS);
    expect(vm.segments.map((s) => [s.gpa, s.memSize, s.data.length])).toEqual([
      [KERNEL_PHYS, 0x1000, 0x1000],
      [BSS_PHYS, BSS_SIZE, 0],
    ]);
    expect([vm.start, vm.end]).toEqual([KERNEL_PHYS, BSS_PHYS + BSS_SIZE]);
    expect(vm.noteOwners).toEqual(["Xen", "GNU", "Linux"]);
    expect(parseVmlinux(vmlinux({ entry: 0xffffffff81000010n })).entry).toBe(KERNEL_PHYS + 0x10);
  });

  it("refuses what is not an x86_64 kernel, naming the field", () => {
    parseError(() => parseVmlinux(vmlinux({ machine: 3 })), "e_machine", 18, /EM_X86_64/);
    parseError(() => parseVmlinux(vmlinux({ type: 3 })), "e_type", 16, /ET_EXEC/);
    parseError(() => parseVmlinux(vmlinux({ textPhys: 0x8000 })), "ph[0].p_paddr", 64 + 24, /below 1 MiB/);
    parseError(() => parseVmlinux(vmlinux({ entry: 0x5000000n })), "e_entry", 24, /inside no PT_LOAD/);
    parseError(() => parseVmlinux(elf.subarray(0, 0x1800)), "ph[0].p_offset", 64 + 8, /truncated/);
    const e32 = elf.slice();
    e32[4] = 1;
    parseError(() => parseVmlinux(e32), "e_ident[EI_CLASS]", 4, /ELFCLASS64/);
  });
});

describe("loadLinux: a bzImage whose payload the host decompresses", () => {
  it("loads the vmlinux at its physical addresses and enters phys_startup_64 in long mode", () => {
    const { mem } = ram(32);
    const initrd = new Uint8Array(0x5000).fill(0x49);
    const r = loadLinux(mem, { kernel: gzBz, cmdline: "console=ttyS0", initrd });
    const info = r.linux;
    expect(info).toMatchObject({
      kernelFile: "bzImage",
      entry: "vmlinux",
      decompressed: "gzip",
      decompressor: "node:zlib",
      loadAddress: KERNEL_PHYS,
      runtimeStart: KERNEL_PHYS,
      initSize: BSS_PHYS + BSS_SIZE - KERNEL_PHYS,
      entryPoint: KERNEL_PHYS,
      protocol: "2.15",
    });
    expect(r.entry.mode).toBe("long");
    expect(r.entry.regs.rip).toBe(BigInt(KERNEL_PHYS));
    expect(r.entry.regs.rsi).toBe(BigInt(info.zeroPage));
    expect(r.entry.sregs.cs.selector).toBe(BOOT_CS);
    // the segments are in memory; the bss is zeroed (the RAM was 0xaa)
    expect(Array.from(mem.read(KERNEL_PHYS, VMLINUX_CODE.length))).toEqual(VMLINUX_CODE);
    expect(mem.read(BSS_PHYS, BSS_SIZE).every((b) => b === 0)).toBe(true);
    expect(r.loaded.slice(0, 2)).toEqual([
      { gpa: KERNEL_PHYS, size: 0x1000, fileSize: 0x1000 },
      { gpa: BSS_PHYS, size: BSS_SIZE, fileSize: 0 },
    ]);
    // nothing of the bzImage itself went to memory: no protected-mode kernel at 1 MiB
    expect(mem.readU8(0x100000)).toBe(0xaa);
    // the zero page has the bzImage's own header, with code32_start where the kernel is
    const zp = info.zeroPage;
    expect(mem.read(zp + 0x202, 4)).toEqual(gzBz.subarray(0x202, 0x206));
    expect(mem.readU32(zp + HDR("code32_start"))).toBe(KERNEL_PHYS);
    expect(mem.readU8(zp + HDR("type_of_loader"))).toBe(0xff);
    expect(mem.readU32(zp + HDR("kernel_alignment"))).toBe(0x200000);
    expect(Number(mem.readU64(zp + HDR("pref_address")))).toBe(KERNEL_PHYS);
    expect(mem.readU32(zp + HDR("init_size"))).toBe(0x400000);
    expect(mem.readU32(zp + HDR("payload_length"))).toBe(gzBz.length - 5 * 512 - PM_HEAD);
    // the initrd is clear of the kernel and of the decompressor's space alike
    expect(info.initrd!.gpa).toBeGreaterThanOrEqual(BSS_PHYS + BSS_SIZE);
    expect(mem.read(info.initrd!.gpa, 0x5000)).toEqual(initrd);
    expect(describeLinuxBoot(info)).toMatch(
      /^linux: protocol 2\.15, vmlinux entry at 0x1000000 \(gzip payload decompressed on the host by node:zlib in \d+ ms\)/,
    );
  });

  it('decompress: "guest" enters the bzImage as before, and says why', () => {
    const { mem } = ram(32);
    const r = loadLinux(mem, { kernel: gzBz, decompress: "guest" });
    expect(r.linux).toMatchObject({
      entry: "bzImage",
      why: expect.stringMatching(/^decompress: "guest"/),
      loadAddress: KERNEL_PHYS,
    });
    expect(r.linux.decompressed).toBeUndefined();
    expect(r.entry.regs.rip).toBe(BigInt(KERNEL_PHYS + 0x200));
    expect(describeLinuxBoot(r.linux)).toMatch(/bzImage entry at 0x1000200 \(the kernel decompresses itself/);
    // the 32-bit protocol has no vmlinux entry
    const p = loadLinux(ram(32).mem, { kernel: gzBz, mode: "protected" });
    expect(p.linux).toMatchObject({ entry: "bzImage", why: /32-bit boot protocol/ });
    expect(() => loadLinux(ram(32).mem, { kernel: gzBz, decompress: "hot" as never })).toThrow(
      BootSetupError,
    );
  });

  it("falls back to the in-guest decompressor whenever the host cannot do it, never failing the load", () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ["no payload recorded", bzImage({ prefAddress: KERNEL_PHYS }), /payload_length is 0/],
      ["unknown compression", wrap(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)), /not one this loader knows/],
      ["corrupt gzip", wrap(gzipped(elf).fill(0, 30, 80)), /gzip payload/],
      [
        "not an ELF inside",
        wrap(gzipped(new Uint8Array(0x200).fill(7))),
        /not an x86_64 vmlinux: .*e_ident\[EI_MAG\]/,
      ],
      [
        "an ELF that is not x86_64",
        wrap(gzipped(vmlinux({ machine: 40 }))),
        /not an x86_64 vmlinux: .*e_machine/,
      ],
      [
        "linked elsewhere than pref_address",
        wrap(gzipped(elf), { prefAddress: 0x2000000 }),
        /pref_address is 0x2000000: they disagree/,
      ],
      ["larger than init_size", wrap(gzipped(elf), { initSize: 0x2000 }), /beyond pref_address \+ init_size/],
    ];
    for (const [what, kernel, why] of cases) {
      const r = loadLinux(ram(48).mem, { kernel });
      expect(r.linux.entry, what).toBe("bzImage");
      expect(r.linux.why, what).toMatch(why);
    }
    // a vmlinux that cannot be placed (the loader's zero page moved onto it) goes back to the bzImage
    // (here: on an e820 entry that is not RAM, which the bzImage's placement does not look at)
    const acpi = [{ addr: BSS_PHYS, size: 0x1000, type: E820_ACPI }];
    const r = loadLinux(ram(48).mem, { kernel: gzBz, e820: acpi });
    expect(r.linux).toMatchObject({
      entry: "bzImage",
      why: /decompressed vmlinux cannot be placed: .*e820 entry/,
    });
  });

  it("loadImage passes decompress through; auto-detection of a bzImage is unchanged", () => {
    expect(loadImage(ram(32).mem, gzBz).linux!.entry).toBe("vmlinux");
    expect(loadImage(ram(32).mem, gzBz, { decompress: "guest" }).linux!.entry).toBe("bzImage");
  });
});

describe("loadLinux: a vmlinux ELF as the kernel file", () => {
  it("gets a made-up 2.15 setup header in its zero page, as Firecracker's loader writes one", () => {
    const { mem } = ram(32);
    const r = loadImage(mem, elf, { cmdline: "quiet", initrd: Uint8Array.of(1, 2, 3) });
    expect(r.format).toBe("linux");
    const info = r.linux!;
    expect(info).toMatchObject({
      kernelFile: "vmlinux",
      entry: "vmlinux",
      entryPoint: KERNEL_PHYS,
      protocol: "2.15",
    });
    expect(info.decompressed).toBeUndefined();
    const zp = info.zeroPage;
    expect(mem.readU16(zp + HDR("boot_flag"))).toBe(0xaa55);
    expect(mem.readU32(zp + HDR("header"))).toBe(0x53726448);
    expect(mem.readU16(zp + HDR("version"))).toBe(0x020f);
    expect(mem.readU8(zp + HDR("type_of_loader"))).toBe(0xff);
    expect(mem.readU8(zp + HDR("loadflags"))).toBe(LOADED_HIGH | CAN_USE_HEAP);
    expect(mem.readU16(zp + HDR("heap_end_ptr"))).toBe(0xfe00);
    expect(mem.readU32(zp + HDR("cmdline_size"))).toBe(2047);
    expect(mem.readU32(zp + HDR("kernel_alignment"))).toBe(0x200000);
    expect(mem.readU16(zp + HDR("xloadflags"))).toBe(XLF_KERNEL_64);
    expect(mem.readU32(zp + HDR("code32_start"))).toBe(KERNEL_PHYS);
    expect(Number(mem.readU64(zp + HDR("pref_address")))).toBe(KERNEL_PHYS);
    expect(mem.readU32(zp + HDR("init_size"))).toBe(BSS_PHYS + BSS_SIZE - KERNEL_PHYS);
    expect(mem.readU32(zp + HDR("cmd_line_ptr"))).toBe(info.cmdline.gpa);
    expect(mem.readU32(zp + HDR("ramdisk_size"))).toBe(3);
    expect(mem.readU8(zp + BOOT_PARAMS.sentinel)).toBe(0);
    expect(mem.readU8(zp + BOOT_PARAMS.e820_entries)).toBe(info.e820.length);
    expect(r.entry.regs.rip).toBe(BigInt(KERNEL_PHYS));
    // an ELF without the Linux note still boots as Linux when asked to
    const plain = vmlinux({ notes: [] });
    expect(detectFormat(plain)).toBe("elf");
    expect(loadImage(ram(32).mem, plain, { format: "linux" }).linux!.entry).toBe("vmlinux");
  });

  it("refuses segments out of RAM or on the loader's structures and ACPI tables, and the 32-bit protocol", () => {
    const refused = (
      mib: number,
      opts: Omit<LinuxOptions, "kernel">,
      kernel: Uint8Array,
      field: string,
      offset: number,
      m: RegExp,
    ) => {
      const { mem, bytes } = ram(mib);
      expectImageError(() => loadLinux(mem, { kernel, ...opts }), bytes, field, offset, m);
    };
    refused(16, {}, elf, "ph[0].p_paddr", 64 + 24, /not in guest RAM .* at least 17 MiB/);
    refused(
      32,
      { layout: { cmdline: KERNEL_PHYS + 0x10 } },
      elf,
      "ph[0].p_paddr",
      64 + 24,
      /overlaps the loader's command line/,
    );
    refused(
      32,
      { e820: [{ addr: BSS_PHYS + 0x1000, size: 0x1000, type: E820_ACPI }] },
      elf,
      "ph[1].p_paddr",
      64 + 56 + 24,
      /overlaps the e820 entry of type 3/,
    );
    refused(64, {}, vmlinux({ textPhys: 0xfffff800 }), "ph[0].p_paddr", 64 + 24, /above 4 GiB/);
    expect(() => loadLinux(ram(32).mem, { kernel: elf, mode: "protected" })).toThrow(BootSetupError);
    expect(() => loadLinux(ram(32).mem, { kernel: elf, cmdline: "x".repeat(2048) })).toThrow(GuestImageError);
  });
});

const softWhy = unavailable("soft");
describe.skipIf(softWhy !== undefined)("synthetic kernels run on the soft backend", () => {
  async function run(kernel: Uint8Array, extra: { decompress?: "auto" | "guest" } = {}) {
    const vm = await createMachine({ memoryMiB: 32, backend: "soft" });
    try {
      vm.addDevice(new DebugExit({ port: 0xf4 }));
      const out: number[] = [];
      vm.io.onOut(0xe9, (_p, _s, v) => out.push(v & 0xff));
      const r = vm.load(kernel, { cmdline: "console=ttyS0", initrd: Uint8Array.of(0x49, 0x4e), ...extra });
      const result = vm.runSync({ timeoutMs: 20_000 });
      return { result, out, r };
    } finally {
      vm.close();
    }
  }
  const OK = { reason: "debug-exit", exitCode: (0x2a << 1) | 1 };
  // 'V', the bss byte, CS, DS, e820 entries, type_of_loader, cmdline's 'c', the initrd's 'I', paging
  const vmlinuxSaw = (e820: number) => [0x56, 0, BOOT_CS, BOOT_DS, e820, 0xff, 0x63, 0x49, 0x80];

  it("a gzip bzImage: the host unpacks it and the vmlinux runs, seeing HdrS through RSI", async () => {
    const { result, out, r } = await run(gzBz);
    expect(r.linux!.entry).toBe("vmlinux");
    expect(result).toMatchObject(OK);
    expect(out).toEqual(vmlinuxSaw(r.linux!.e820.length));
  });

  it('the same bzImage with decompress: "guest" runs its own 64-bit entry instead', async () => {
    const { result, out, r } = await run(gzBz, { decompress: "guest" });
    expect(r.linux!.entry).toBe("bzImage");
    expect(result).toMatchObject(OK);
    expect(out).toEqual([0x36, BOOT_CS, BOOT_DS, r.linux!.e820.length, 0xff, 0x63, 0x49, 0x80]);
  });

  it.skipIf(xzWhy !== undefined)(`an xz bzImage, as Debian packs its kernel ${xzWhy ?? ""}`, async () => {
    const { result, out, r } = await run(xzBz!);
    expect(r.linux).toMatchObject({ entry: "vmlinux", decompressed: "xz" });
    expect(result).toMatchObject(OK);
    expect(out).toEqual(vmlinuxSaw(r.linux!.e820.length));
  });

  it("a vmlinux ELF given as the kernel file", async () => {
    const { result, out, r } = await run(elf);
    expect(r.linux!.kernelFile).toBe("vmlinux");
    expect(result).toMatchObject(OK);
    expect(out).toEqual(vmlinuxSaw(r.linux!.e820.length));
  });
});

const cliWhy = backendMissing("soft");
describe.skipIf(cliWhy !== undefined)(
  `nodevmm run --verbose says how Linux is entered ${cliWhy ?? ""}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), "nodevmm-vmlinux-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const run = (name: string, bytes: Uint8Array) => {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const r = spawnSync(
        process.execPath,
        [bin, "run", path, "--backend", "soft", "--append", "console=ttyS0", "--timeout", "20", "-v"],
        {
          cwd: root,
          timeout: 60_000,
          input: "",
        },
      );
      return { status: r.status, stderr: r.stderr.toString(), out: [...r.stdout] };
    };

    it("a vmlinux file is detected as Linux and entered at its e_entry", () => {
      const r = run("vmlinux", elf);
      expect(r.stderr).toMatch(/loaded .* as linux, entry rip=0x1000000/);
      expect(r.stderr).toMatch(
        /linux: protocol 2\.15, vmlinux entry at 0x1000000: the kernel file is a vmlinux ELF/,
      );
      expect(r.out.slice(0, 4)).toEqual([0x56, 0, BOOT_CS, BOOT_DS]);
      expect(r.status).toBe((0x2a << 1) | 1);
    });

    it("a gzip bzImage is unpacked on the host", () => {
      const r = run("bzImage", gzBz);
      expect(r.stderr).toMatch(
        /vmlinux entry at 0x1000000 \(gzip payload decompressed on the host by node:zlib in \d+ ms\)/,
      );
      expect(r.out[0]).toBe(0x56);
      expect(r.status).toBe((0x2a << 1) | 1);
    });
  },
);

// Debian's kernel as the nested-KVM lane caches it (scripts/nested-kvm/kernel.mjs)
const cacheDir = join(import.meta.dirname, "..", "..", ".cache", "nested-kvm");
const debian = existsSync(cacheDir)
  ? readdirSync(cacheDir)
      .filter((d) => d.startsWith("kernel-"))
      .map((d) => join(cacheDir, d, "vmlinuz"))
      .find((p) => existsSync(p))
  : undefined;
describe.skipIf(debian === undefined)(
  `Debian's kernel ${debian ? "" : "(not cached in .cache/nested-kvm)"}`,
  () => {
    it("its xz payload unpacks on the host (when a decompressor is here) into a vmlinux at 16 MiB", () => {
      const kernel = readFileSync(debian!);
      const h = parseLinuxHeader(kernel);
      const found = findBzImagePayload(kernel, h);
      expect(found).toMatchObject({ ok: true, payload: { format: "xz" } });
      const { mem } = ram(256, 0);
      const r = loadLinux(mem, { kernel });
      if (r.linux.entry !== "vmlinux") {
        console.log(
          `Debian's kernel: no host decompression here (${r.linux.why}); checked the fallback only`,
        );
        expect(r.linux.why).toMatch(/no decompressor for xz/);
        return;
      }
      expect(r.linux).toMatchObject({
        decompressed: "xz",
        loadAddress: h.prefAddress,
        entryPoint: h.prefAddress,
      });
      expect(r.linux.runtimeStart + r.linux.initSize).toBeLessThanOrEqual(h.prefAddress + h.initSize);
      expect(r.linux.initSize).toBeGreaterThan(16 * MiB);
      // the segments in memory are the ones of the vmlinux the nested-KVM lane unpacked with xz(1)
      const cached = join(debian!, "..", "vmlinux");
      if (!existsSync(cached)) return;
      const vm = parseVmlinux(readFileSync(cached));
      expect(r.loaded.map((l) => [l.gpa, l.size])).toEqual(vm.segments.map((s) => [s.gpa, s.memSize]));
      for (const s of vm.segments) {
        expect(
          Buffer.compare(mem.read(s.gpa, s.data.length), s.data),
          `segment at ${s.gpa.toString(16)}`,
        ).toBe(0);
      }
    }, 60_000);
  },
);

describe("a Machine's decompress default", () => {
  it("soft: the host decompresses (auto); host and guest when asked", async () => {
    const { createMachine } = await import("../../lib/vmm/machine.js");
    for (const [decompress, entry] of [
      [undefined, "vmlinux"],
      ["auto", "vmlinux"],
      ["host", "vmlinux"],
      ["guest", "bzImage"],
    ] as const) {
      const vm = await createMachine({ backend: "soft", memoryMiB: 64 });
      try {
        const r = vm.loadLinux({ kernel: gzBz, ...(decompress ? { decompress } : {}) });
        expect(r.linux.entry, String(decompress)).toBe(entry);
      } finally {
        vm.close();
      }
    }
  });
});
