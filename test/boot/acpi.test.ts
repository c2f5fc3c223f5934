// The PC's ACPI tables read back as an OS reads them: the RSDP found by scanning the BIOS area,
// XSDT/RSDT followed to the FADT and MADT, every checksum and length, the FADT's fixed-feature
// blocks, one MADT processor entry per vCPU, and the DSDT's \_S5 decoded from its AML. When
// ACPICA's iasl is installed, it disassembles every table and must find nothing wrong.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  aml,
  BIOS_AREA_END,
  BIOS_AREA_START,
  buildPcAcpi,
  installPcAcpi,
  PC_ACPI,
  withPcAcpi,
} from "../../lib/boot/acpi/index.js";
import {
  BOOT_PARAMS,
  BootSetupError,
  E820_ACPI,
  E820_RAM,
  E820_RESERVED,
  type LinuxOptions,
  loadLinux,
} from "../../lib/boot/index.js";
import { bzImage } from "../support/bzimage.js";
import { ram } from "./fixtures.js";

// ---- an independent reader (nothing from lib/boot/acpi) ----

const ascii = (b: Uint8Array, at: number, n: number) => String.fromCharCode(...b.subarray(at, at + n));
const sum8 = (b: Uint8Array) => b.reduce((s, x) => (s + x) & 0xff, 0);

class Phys {
  readonly dv: DataView;
  constructor(readonly mem: Uint8Array) {
    this.dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  }
  u8 = (a: number) => this.dv.getUint8(a);
  u16 = (a: number) => this.dv.getUint16(a, true);
  u32 = (a: number) => this.dv.getUint32(a, true);
  u64 = (a: number) => Number(this.dv.getBigUint64(a, true));
  bytes = (a: number, n: number) => this.mem.subarray(a, a + n);
  /** Linux's acpi_find_root_pointer: 16-byte steps over 0xE0000-0xFFFFF, signature and checksum */
  findRsdp(): number | undefined {
    for (let a = 0xe0000; a < 0x100000; a += 16) {
      if (ascii(this.mem, a, 8) === "RSD PTR " && sum8(this.bytes(a, 20)) === 0) return a;
    }
    return undefined;
  }
  table(a: number) {
    const length = this.u32(a + 4);
    return {
      signature: ascii(this.mem, a, 4),
      length,
      revision: this.u8(a + 8),
      bytes: this.bytes(a, length),
    };
  }
}

function machineMemory(cpus: number) {
  const { mem, bytes } = ram(2, 0);
  installPcAcpi(mem, buildPcAcpi({ cpus }));
  return new Phys(bytes);
}

function rootTables(p: Phys) {
  const rsdp = p.findRsdp()!;
  const xsdt = p.table(p.u64(rsdp + 24));
  const rsdt = p.table(p.u32(rsdp + 16));
  const xEntries = Array.from({ length: (xsdt.length - 36) / 8 }, (_, i) =>
    p.u64(p.u64(rsdp + 24) + 36 + 8 * i),
  );
  const rEntries = Array.from({ length: (rsdt.length - 36) / 4 }, (_, i) =>
    p.u32(p.u32(rsdp + 16) + 36 + 4 * i),
  );
  const bySig = new Map(xEntries.map((a) => [p.table(a).signature, a]));
  return { rsdp, xsdt, rsdt, xEntries, rEntries, bySig };
}

/** MADT entries as (type, bytes) */
function madtEntries(p: Phys, madt: number) {
  const len = p.u32(madt + 4);
  const out: { type: number; at: number; length: number }[] = [];
  for (let at = madt + 44; at < madt + len; at += p.u8(at + 1)) {
    out.push({ type: p.u8(at), at, length: p.u8(at + 1) });
    if (p.u8(at + 1) === 0) throw new Error("zero-length MADT entry");
  }
  return out;
}

/** Decodes a PkgLength at `at`: [value, bytes used] */
function readPkgLength(b: Uint8Array, at: number): [number, number] {
  const lead = b[at]!;
  const follow = lead >> 6;
  if (follow === 0) return [lead & 0x3f, 1];
  let v = lead & 0x0f;
  for (let i = 0; i < follow; i++) v += b[at + 1 + i]! * 2 ** (4 + 8 * i);
  return [v, 1 + follow];
}

/** Decodes a ComputationalData integer at `at`: [value, bytes used] */
function readInteger(b: Uint8Array, at: number): [number, number] {
  const op = b[at]!;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (op === 0x00) return [0, 1];
  if (op === 0x01) return [1, 1];
  if (op === 0x0a) return [b[at + 1]!, 2];
  if (op === 0x0b) return [dv.getUint16(at + 1, true), 3];
  if (op === 0x0c) return [dv.getUint32(at + 1, true), 5];
  throw new Error(`not an integer opcode 0x${op.toString(16)}`);
}

describe("PC ACPI tables", () => {
  it("an OS scanning 0xE0000-0xFFFFF finds a revision-2 RSDP with both checksums right", () => {
    const p = machineMemory(1);
    const rsdp = p.findRsdp();
    expect(rsdp).toBe(PC_ACPI.base);
    expect(rsdp! % 16).toBe(0);
    expect(p.u8(rsdp! + 15)).toBe(2);
    expect(p.u32(rsdp! + 20)).toBe(36);
    expect(sum8(p.bytes(rsdp!, 20))).toBe(0);
    expect(sum8(p.bytes(rsdp!, 36))).toBe(0);
  });

  it("XSDT and RSDT list the same FADT and MADT; every table's length and checksum are right", () => {
    const p = machineMemory(1);
    const { xsdt, rsdt, xEntries, rEntries, bySig } = rootTables(p);
    expect([xsdt.signature, rsdt.signature]).toEqual(["XSDT", "RSDT"]);
    expect(xEntries).toEqual(rEntries);
    expect([...bySig.keys()].sort()).toEqual(["APIC", "FACP"]);
    const dsdt = p.u64(bySig.get("FACP")! + 140);
    for (const a of [...xEntries, p.u64(p.findRsdp()! + 24), p.u32(p.findRsdp()! + 16), dsdt]) {
      const t = p.table(a);
      expect(sum8(t.bytes), t.signature).toBe(0);
      expect(t.length, t.signature).toBeGreaterThanOrEqual(36);
      expect(ascii(p.mem, a + 10, 6), t.signature).toBe("NODEVM");
      // tables stay inside the BIOS area they are found in
      expect(a + t.length).toBeLessThanOrEqual(BIOS_AREA_END);
      expect(a).toBeGreaterThanOrEqual(BIOS_AREA_START);
    }
  });

  it("FADT revision 6: PM1a blocks and PM timer at 0xB000, SCI 9, reset through 0xCF9, not hardware-reduced", () => {
    const p = machineMemory(1);
    const f = rootTables(p).bySig.get("FACP")!;
    const t = p.table(f);
    expect([t.revision, t.length]).toEqual([6, 276]);
    expect(p.u16(f + 46)).toBe(9); // SCI_INT
    expect(p.u32(f + 48)).toBe(0); // SMI_CMD: always in ACPI mode
    expect([p.u32(f + 56), p.u32(f + 64), p.u32(f + 76)]).toEqual([0xb000, 0xb004, 0xb008]);
    expect([p.u32(f + 60), p.u32(f + 68), p.u32(f + 72), p.u32(f + 80)]).toEqual([0, 0, 0, 0]);
    expect([p.u8(f + 88), p.u8(f + 89), p.u8(f + 91)]).toEqual([4, 2, 4]); // PM1_EVT/CNT, PM_TMR lengths
    const flags = p.u32(f + 112);
    expect(flags & (1 << 10)).not.toBe(0); // RESET_REG_SUP
    expect(flags & (1 << 20)).toBe(0); // not HW_REDUCED_ACPI
    expect(flags & (1 << 8)).toBe(0); // TMR_VAL_EXT clear: 24-bit timer
    expect(flags & (1 << 4)).toBe(0); // a fixed-feature power button
    expect(flags & 1).toBe(1); // WBINVD
    const bootArch = p.u16(f + 109);
    expect(bootArch & 0x3).toBe(0x3); // legacy devices and an 8042
    // RESET_REG: SystemIO, 8 bits, byte access, 0xCF9; RESET_VALUE 6
    expect([p.u8(f + 116), p.u8(f + 117), p.u8(f + 118), p.u8(f + 119), p.u64(f + 120)]).toEqual([
      1, 8, 0, 1, 0xcf9,
    ]);
    expect(p.u8(f + 128)).toBe(6);
    // X_ blocks agree with the 32-bit ones (ACPICA prefers the X_ ones on revision 3+)
    const gas = (at: number) => [p.u8(at), p.u8(at + 1), p.u64(at + 4)];
    expect(gas(f + 148)).toEqual([1, 32, 0xb000]);
    expect(gas(f + 172)).toEqual([1, 16, 0xb004]);
    expect(gas(f + 208)).toEqual([1, 32, 0xb008]);
    // DSDT and X_DSDT agree; the FACS is 64-byte aligned, "FACS", 64 bytes
    expect(p.u64(f + 140)).toBe(p.u32(f + 40));
    expect(p.table(p.u32(f + 40)).signature).toBe("DSDT");
    const facs = p.u32(f + 36);
    expect(facs % 64).toBe(0);
    expect([ascii(p.mem, facs, 4), p.u32(facs + 4)]).toEqual(["FACS", 64]);
    expect(p.u64(f + 132)).toBe(0); // X_FIRMWARE_CTRL: only one of the two may be set
  });

  it.each([1, 2, 8, 255])(
    "MADT for %i vCPU(s): one enabled local APIC each, the I/O APIC, IRQ0->GSI2, SCI level",
    (cpus) => {
      const p = machineMemory(cpus);
      const m = rootTables(p).bySig.get("APIC")!;
      expect(p.u32(m + 36)).toBe(0xfee00000);
      expect(p.u32(m + 40) & 1).toBe(1); // PCAT_COMPAT
      const entries = madtEntries(p, m);
      const lapics = entries.filter((e) => e.type === 0);
      expect(lapics.map((e) => [e.length, p.u8(e.at + 2), p.u8(e.at + 3), p.u32(e.at + 4) & 1])).toEqual(
        Array.from({ length: cpus }, (_, i) => [8, i, i, 1]),
      );
      const ioapics = entries.filter((e) => e.type === 1);
      expect(ioapics.map((e) => [e.length, p.u8(e.at + 2), p.u32(e.at + 4), p.u32(e.at + 8)])).toEqual([
        [12, 0, 0xfec00000, 0],
      ]);
      const overrides = entries
        .filter((e) => e.type === 2)
        .map((e) => [e.length, p.u8(e.at + 2), p.u8(e.at + 3), p.u32(e.at + 4), p.u16(e.at + 8)]);
      expect(overrides).toEqual([
        [10, 0, 0, 2, 0],
        [10, 0, 9, 9, 0x000d], // active high, level
      ]);
      const nmis = entries.filter((e) => e.type === 4).map((e) => [e.length, p.u8(e.at + 2), p.u8(e.at + 5)]);
      expect(nmis).toEqual([[6, 0xff, 1]]);
    },
  );

  it("refuses vCPU counts the xAPIC MADT cannot list", () => {
    expect(() => buildPcAcpi({ cpus: 256 })).toThrow(BootSetupError);
    expect(() => buildPcAcpi({ cpus: 0 })).toThrow(BootSetupError);
    expect(() => buildPcAcpi({ cpus: 1, base: 0xd0000 })).toThrow(/0xe0000-0xfffff/);
  });

  it("the DSDT's AML is Name(\\_S5, Package(){5, 5, 0, 0}) and nothing else", () => {
    const p = machineMemory(1);
    const f = rootTables(p).bySig.get("FACP")!;
    const d = p.table(p.u32(f + 40));
    expect(d.revision).toBe(2);
    const body = d.bytes.subarray(36);
    expect(body[0]).toBe(0x08); // NameOp
    expect(ascii(body, 1, 4)).toBe("_S5_");
    expect(body[5]).toBe(0x12); // PackageOp
    const [len, used] = readPkgLength(body, 6);
    const pkgEnd = 6 + len;
    let at = 6 + used;
    const count = body[at++]!;
    const values: number[] = [];
    while (at < pkgEnd) {
      const [v, n] = readInteger(body, at);
      values.push(v);
      at += n;
    }
    expect(count).toBe(4);
    expect(values).toEqual([PC_ACPI.s5SlpTyp, PC_ACPI.s5SlpTyp, 0, 0]);
    expect(pkgEnd).toBe(body.length);
  });

  it("leaves guest memory alone when the block does not fit in RAM", () => {
    const { mem, bytes } = ram(1, 0xaa);
    const small = {
      ...mem,
      size: mem.size,
      regions: mem.regions,
      find: () => undefined,
      write: mem.write.bind(mem),
      view: mem.view.bind(mem),
    };
    expect(() => installPcAcpi(small, buildPcAcpi({ cpus: 1 }))).toThrow(BootSetupError);
    expect(bytes.every((b) => b === 0xaa)).toBe(true);
  });
});

describe("AML encoder", () => {
  it("PkgLength counts its own bytes and takes 1-4 bytes", () => {
    expect(aml.pkgLength(0)).toEqual([1]);
    expect(aml.pkgLength(62)).toEqual([63]);
    expect(aml.pkgLength(62 + 1)).toEqual([0x40 | (65 & 0xf), 65 >> 4]); // 63 body + 2 = 65
    for (const body of [0, 5, 62, 63, 100, 4093, 4094, 70000, 2 ** 20]) {
      const enc = aml.pkgLength(body);
      expect(readPkgLength(Uint8Array.from(enc), 0)).toEqual([body + enc.length, enc.length]);
    }
  });
  it("integers in their shortest form", () => {
    expect([...aml.integer(0)]).toEqual([0x00]);
    expect([...aml.integer(1)]).toEqual([0x01]);
    expect([...aml.integer(5)]).toEqual([0x0a, 5]);
    expect([...aml.integer(0x1234)]).toEqual([0x0b, 0x34, 0x12]);
    expect([...aml.integer(0xfec00000)]).toEqual([0x0c, 0x00, 0x00, 0xc0, 0xfe]);
    expect([...aml.integer(0x1_0000_0000n)]).toEqual([0x0e, 0, 0, 0, 0, 1, 0, 0, 0]);
    expect(() => aml.integer(-1)).toThrow(BootSetupError);
  });
  it("names: padding, root and parent prefixes, dual and multi-segment paths", () => {
    expect(ascii(aml.nameString("_S5"), 0, 4)).toBe("_S5_");
    expect([...aml.nameString("\\_SB")]).toEqual(
      [0x5c, ..."_SB_"].map((c) => (typeof c === "string" ? c.charCodeAt(0) : c)),
    );
    expect(aml.nameString("\\_SB.PCI0")[1]).toBe(0x2e);
    expect([...aml.nameString("^^A.B.C").subarray(0, 4)]).toEqual([0x5e, 0x5e, 0x2f, 3]);
    expect(() => aml.nameString("5ABC")).toThrow(BootSetupError);
    expect(() => aml.nameString("ABCDE")).toThrow(BootSetupError);
  });
  it("strings, packages, scopes", () => {
    expect([...aml.string("ab")]).toEqual([0x0d, 0x61, 0x62, 0]);
    expect([...aml.pkg([1, "a"])]).toEqual([0x12, 6, 2, 0x01, 0x0d, 0x61, 0]);
    const s = aml.scope("\\_SB", [aml.name("X", 0)]);
    expect([...s]).toEqual([0x10, 12, 0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x08, 0x58, 0x5f, 0x5f, 0x5f, 0x00]);
    expect(() => aml.string("a\0b")).toThrow(BootSetupError);
  });
});

describe("ACPI through the Linux loader", () => {
  it("vm.loadLinux's path: RSDP in boot_params, the block's pages ACPI in e820, the BIOS hole still reserved", () => {
    const { mem, bytes } = ram(16, 0);
    const opts: LinuxOptions = { kernel: bzImage() };
    const acpi = withPcAcpi(opts, 1);
    const r = loadLinux(mem, acpi.options);
    acpi.install(mem);
    const p = new Phys(bytes);
    const zp = r.linux!.zeroPage;
    expect(p.u64(zp + BOOT_PARAMS.acpi_rsdp_addr)).toBe(p.findRsdp());
    const e820 = r.linux!.e820;
    const acpiEntries = e820.filter((e) => e.type === E820_ACPI);
    expect(acpiEntries).toEqual([{ addr: 0xe0000, size: 0x1000, type: E820_ACPI }]);
    // 640 KiB-1 MiB is still all non-RAM, and no entries overlap
    const sorted = [...e820].sort((a, b) => a.addr - b.addr);
    for (let i = 1; i < sorted.length; i++) {
      expect(sorted[i]!.addr).toBeGreaterThanOrEqual(sorted[i - 1]!.addr + sorted[i - 1]!.size);
    }
    const covering = (a: number) => e820.find((e) => e.addr <= a && a < e.addr + e.size);
    for (let a = 0xa0000; a < 0x100000; a += 0x1000) {
      expect([E820_RESERVED, E820_ACPI]).toContain(covering(a)?.type);
    }
    expect(covering(0x100000)?.type).toBe(E820_RAM);
  });

  it("an RSDP the caller names wins: no tables of ours, options unchanged", () => {
    const opts: LinuxOptions = { kernel: bzImage(), acpiRsdp: 0xf0000 };
    const acpi = withPcAcpi(opts, 1);
    expect(acpi.options).toBe(opts);
    const { mem, bytes } = ram(16, 0);
    acpi.install(mem);
    expect(new Phys(bytes).findRsdp()).toBeUndefined();
  });
});

const iasl = spawnSync("iasl", ["-v"], { encoding: "utf8" });
const haveIasl = iasl.status === 0;
if (!haveIasl)
  console.log("skipping iasl checks: ACPICA's iasl is not installed (apt-get install acpica-tools)");

describe.skipIf(!haveIasl)("ACPICA's disassembler (iasl -d)", () => {
  it("disassembles every table without an error or warning, and \\_S5 as Package(){5,5,0,0}", () => {
    const p = machineMemory(2);
    const { rsdp, bySig } = rootTables(p);
    const f = bySig.get("FACP")!;
    // (iasl -d takes tables with the standard header; the RSDP is checked by the reader above)
    const files: Record<string, Uint8Array> = {
      xsdt: p.table(p.u64(rsdp + 24)).bytes,
      rsdt: p.table(p.u32(rsdp + 16)).bytes,
      facp: p.table(f).bytes,
      apic: p.table(bySig.get("APIC")!).bytes,
      dsdt: p.table(p.u32(f + 40)).bytes,
      facs: p.bytes(p.u32(f + 36), 64),
    };
    const dir = mkdtempSync(join(tmpdir(), "acpi-"));
    try {
      const out: Record<string, string> = {};
      for (const [name, b] of Object.entries(files)) {
        const file = join(dir, `${name}.dat`);
        writeFileSync(file, b);
        const r = spawnSync("iasl", ["-d", file], { encoding: "utf8", cwd: dir });
        expect(r.status, `${name}: ${r.stdout}${r.stderr}`).toBe(0);
        out[name] = readFileSync(join(dir, `${name}.dsl`), "utf8");

        expect(`${r.stdout}${r.stderr}`, name).not.toMatch(/error|warning/i);
        expect(out[name], name).not.toMatch(/\*\*\*\*|Invalid|Incorrect|Error/);
      }
      expect(out.dsdt).toMatch(/Name \(_S5, Package \(0x04\)[^{]*\{\s*0x05,\s*0x05,\s*Zero,\s*Zero\s*\}\)/);
      expect(out.facp).toMatch(/Hardware Reduced \(V5\)\s*:\s*0/);
      expect(out.facp).toMatch(/Reset Register Supported \(V2\)\s*:\s*1/);
      expect(out.apic.match(/Subtable Type : 00 \[Processor Local APIC\]/g)?.length).toBe(2);
      // the same check sees a broken table: a wrong checksum is reported
      const bad = Uint8Array.from(files.apic!);
      bad[9] = (bad[9]! + 1) & 0xff;
      writeFileSync(join(dir, "bad.dat"), bad);
      const r = spawnSync("iasl", ["-d", join(dir, "bad.dat")], { encoding: "utf8", cwd: dir });
      const dsl = readFileSync(join(dir, "bad.dsl"), "utf8");
      expect(`${r.stdout}${r.stderr}${dsl}`).toMatch(/Incorrect checksum|Invalid|Error/i);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it("describes virtio-mmio devices as LNRO0005 devices with their window and line", () => {
    const acpi = buildPcAcpi({
      cpus: 1,
      virtioMmio: [
        { base: 0xd0000000, length: 0x1000, irq: 5 },
        { base: 0xd0001000, length: 0x1000, irq: 6 },
      ],
    });
    const dsdt = acpi.tables.find((t) => t.signature === "DSDT")!;
    const bytes = acpi.bytes.subarray(dsdt.gpa - acpi.base, dsdt.gpa - acpi.base + dsdt.length);
    const dir = mkdtempSync(join(tmpdir(), "acpi-"));
    try {
      writeFileSync(join(dir, "dsdt.dat"), bytes);
      const r = spawnSync("iasl", ["-d", join(dir, "dsdt.dat")], { encoding: "utf8", cwd: dir });
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
      expect(`${r.stdout}${r.stderr}`).not.toMatch(/error|warning/i);
      const dsl = readFileSync(join(dir, "dsdt.dsl"), "utf8");
      expect(dsl.match(/Name \(_HID, "LNRO0005"\)/g)?.length).toBe(2);
      expect(dsl).toMatch(/Memory32Fixed \(ReadWrite,\s*0xD0000000,[^)]*0x00001000,/);
      expect(dsl).toMatch(/Memory32Fixed \(ReadWrite,\s*0xD0001000,[^)]*0x00001000,/);
      expect(dsl).toMatch(
        /Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x00000005,?\s*\}/,
      );
      expect(dsl).toMatch(
        /Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x00000006,?\s*\}/,
      );
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
