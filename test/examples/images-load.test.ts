// Every committed example image loads with the options its manifest entry gives, into the entry state
// its format calls for; and each .expected file says what the guest's code actually computes.
import { describe, expect, it } from "vitest";
import {
  GuestImageError,
  type LoadResult,
  loadImage,
  MULTIBOOT_BOOTLOADER_MAGIC,
  multibootMemoryMap,
  parseElf,
} from "../../lib/boot/index.js";
import { GuestMemory } from "../../lib/vmm/memory.js";
import { expected, image, type ManifestEntry, manifest } from "./paths.js";

function machine(m: ManifestEntry): GuestMemory {
  const mem = new GuestMemory();
  mem.addRegion(0, new Uint8Array(m.memoryMiB * 1024 * 1024));
  return mem;
}

function load(m: ManifestEntry): { mem: GuestMemory; r: LoadResult; img: Uint8Array } {
  const mem = machine(m);
  const img = image(m);
  const r = loadImage(mem, img, { format: m.format, ...m.load, cmdline: m.cmdline });
  return { mem, r, img };
}

const byName = (name: string) => manifest.find((m) => m.name === name)!;

describe.each(manifest)("$name", (m) => {
  it("loads in the format and mode the manifest says, with its code at the entry point", () => {
    const { mem, r, img } = load(m);
    const rip = Number(r.entry.sregs.cs.base + r.entry.regs.rip!);
    if (m.format === "flat") {
      expect(r.entry.mode).toBe(m.load!.mode);
      expect(rip).toBe(m.load!.address);
      expect(mem.read(m.load!.address, img.length)).toEqual(img);
    } else {
      const elf = parseElf(img);
      expect(rip).toBe(elf.entryPhys);
      expect(r.entry.mode).toBe(elf.bits === 64 ? "long" : "protected");
      for (const s of elf.segments) {
        expect(mem.read(s.gpa, s.data.length)).toEqual(s.data);
        expect(mem.view(s.gpa + s.data.length, s.memSize - s.data.length).every((b) => b === 0)).toBe(true);
      }
    }
    expect(r.format).toBe(m.format === "elf" ? (parseElf(img).bits === 64 ? "elf64" : "elf32") : m.format);
    expect(expected(m).length).toBeGreaterThan(0);
  });

  it("gives a GuestImageError when truncated inside its loaded data", () => {
    const img = image(m);
    const dataEnd =
      m.format === "flat"
        ? 0
        : Math.max(...parseElf(img).segments.map((s) => s.data.byteOffset - img.byteOffset + s.data.length)) -
          1;
    const cut = img.subarray(0, dataEnd);
    expect(() => loadImage(machine(m), cut, { format: m.format, ...m.load })).toThrow(GuestImageError);
  });
});

describe("what the images do", () => {
  it("real-hello is a boot sector that holds its greeting", () => {
    const img = image(byName("real-hello"));
    expect(img.length).toBe(512);
    expect([img[510], img[511]]).toEqual([0x55, 0xaa]);
    expect(Buffer.from(img).includes(expected(byName("real-hello")))).toBe(true);
  });

  it("long-crc.expected holds the right primes and CRC-32 values", () => {
    const primes: number[] = [];
    for (let n = 2; n < 10000; n++) if (primes.every((p) => p * p > n || n % p !== 0)) primes.push(n);
    const table = Array.from({ length: 256 }, (_, i) => {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      return c >>> 0;
    });
    const crc = (bytes: Uint8Array) => {
      let c = 0xffffffff;
      for (const b of bytes) c = table[(c ^ b) & 0xff]! ^ (c >>> 8);
      return (~c >>> 0).toString(16);
    };
    const buffer = Uint8Array.from({ length: 4096 }, (_, i) => (i * 31 + (i >> 8)) & 0xff);
    const sum = primes.reduce((a, b) => a + b, 0);
    expect(expected(byName("long-crc"))).toBe(
      `primes below 10000: ${primes.length}, sum ${sum}, largest ${primes.at(-1)}\n` +
        `crc32("123456789") = 0x${crc(new TextEncoder().encode("123456789"))}\n` +
        `crc32(buffer[4096]) = 0x${crc(buffer)}\n` +
        "self-check passed\n",
    );
    expect(byName("long-crc").stop).toBe("debug-exit");
  });

  it("multiboot-info.expected is what the loader hands a kernel in the manifest's machine", () => {
    const m = byName("multiboot-info");
    const { mem, r } = load(m);
    expect(r.entry.regs.rax).toBe(BigInt(MULTIBOOT_BOOTLOADER_MAGIC));
    const info = Number(r.entry.regs.rbx);
    const map = multibootMemoryMap(mem.regions)
      .map((e) => `mmap 0x${e.base.toString(16)} len 0x${e.length.toString(16)} type ${e.type}\n`)
      .join("");
    expect(expected(m)).toBe(
      `multiboot magic 0x2badb002, flags 0x${mem.readU32(info).toString(16)}\n` +
        `mem_lower ${mem.readU32(info + 4)} KiB, mem_upper ${mem.readU32(info + 8)} KiB\n` +
        `cmdline "${m.cmdline}"\n` +
        `boot loader "nodevmm"\n${map}modules 0\n`,
    );
  });

  it("custom-device.expected shows operand * 2 + 1 for every exchange", () => {
    const lines = expected(byName("custom-device")).trim().split("\n");
    const exchanges = lines.slice(0, -1).map((l) => l.match(/^device\((\d+)\) = (\d+)$/));
    expect(exchanges.length).toBe(5);
    for (const x of exchanges) expect(Number(x![2])).toBe((Number(x![1]) * 2 + 1) >>> 0);
    expect(lines.at(-1)).toBe("custom device: all results correct");
  });

  it("hypercall.expected shows the host's answers to add, mul and an unknown op", () => {
    const text = expected(byName("hypercall"));
    const add = text.match(/add\((\d+), (\d+)\) = (\d+)/)!;
    const mul = text.match(/mul\((\d+), (\d+)\) = (\d+)/)!;
    expect(BigInt(add[1]!) + BigInt(add[2]!)).toBe(BigInt(add[3]!));
    expect(BigInt(mul[1]!) * BigInt(mul[2]!)).toBe(BigInt(mul[3]!));
    expect(text).toContain("op 127 = 0xffffffffffffffff");
  });
});
