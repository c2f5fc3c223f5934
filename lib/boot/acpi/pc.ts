// The ACPI tables of nodevmm's PC, as one block in the BIOS area (0xE0000-0xFFFFF) where an OS that
// scans for the RSDP finds it (Linux also gets its address in boot_params.acpi_rsdp_addr):
//   RSDP, FACS, DSDT (\_S5), FADT, MADT, XSDT, RSDT.
// The hardware they describe is what both backends have at the same addresses: the PM1a blocks
// and PM timer of lib/devices/acpi-pm.ts at 0xB000 (PIIX4's block as SeaBIOS places it for QEMU), the SCI on ISA IRQ 9, reset
// through port 0xCF9 (lib/devices/reset-ports.ts), the local APIC at 0xFEE00000 and the I/O APIC
// (ID 0) at 0xFEC00000 - in the kernel on KVM, lib/devices on the soft backend.

import { E820_ACPI, E820_RESERVED, type E820Entry, HIGH_MEMORY, ISA_HOLE_START } from "../e820.js";
import { BootSetupError, hex } from "../errors.js";
import type { LoadTarget } from "../target.js";
import { dsdtBytes, type VirtioMmioSlot } from "./dsdt.js";
import { facsBytes, fadtBytes } from "./fadt.js";
import { INTI, madtBytes } from "./madt.js";
import { RSDP_SIZE, rsdpBytes, rsdtBytes, xsdtBytes } from "./rsdp.js";

/** The BIOS area an OS scans for the RSDP, on 16-byte boundaries. */
export const BIOS_AREA_START = 0xe0000;
export const BIOS_AREA_END = 0x100000;

export const PC_ACPI = Object.freeze({
  /** where the block of tables starts (the RSDP first) */
  base: BIOS_AREA_START,
  /** PM1a_EVT_BLK at pmBase, PM1a_CNT_BLK at pmBase + 4, PM_TMR_BLK at pmBase + 8 */
  pmBase: 0xb000,
  sciIrq: 9,
  /** the SLP_TYP that \_S5 names and the PM1 control block takes as soft-off */
  s5SlpTyp: 5,
  resetPort: 0xcf9,
  /** SYS_RST | RST_CPU: a hard reset, as QEMU's and most firmware's FADT say */
  resetValue: 0x06,
  localApic: 0xfee00000,
  ioApic: 0xfec00000,
  ioApicId: 0,
  /** the CMOS century byte (lib/devices/cmos.ts RTC_CENTURY) */
  century: 0x32,
});

export interface PcAcpiOptions {
  /** vCPUs: one Processor Local APIC entry each, APIC IDs 0..cpus-1 */
  cpus: number;
  /** virtio-mmio devices the DSDT describes */
  virtioMmio?: readonly VirtioMmioSlot[];
  /** where the block starts: 4 KiB-aligned inside 0xE0000-0xFFFFF; default 0xE0000 */
  base?: number;
}

export interface AcpiTableInfo {
  signature: string;
  gpa: number;
  length: number;
}

export interface PcAcpi {
  /** guest-physical address of the RSDP */
  rsdp: number;
  /** the block as it goes into guest memory at `base` */
  base: number;
  bytes: Uint8Array;
  /** every table (RSDP included) and where it sits */
  tables: AcpiTableInfo[];
  /** the block's pages as ACPI data (type 3), the rest of 640 KiB-1 MiB still reserved */
  e820: E820Entry[];
}

const PAGE = 0x1000;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Builds the tables for a PC with `cpus` vCPUs; touches no guest memory. */
export function buildPcAcpi(opts: PcAcpiOptions): PcAcpi {
  const base = opts.base ?? PC_ACPI.base;
  if (!Number.isInteger(base) || base < BIOS_AREA_START || base >= BIOS_AREA_END || base % PAGE !== 0) {
    throw new BootSetupError(
      `ACPI tables at ${String(base)}: not a 4 KiB-aligned address in ${hex(BIOS_AREA_START)}-${hex(BIOS_AREA_END - 1)}, where an OS scans for the RSDP`,
    );
  }
  if (!Number.isInteger(opts.cpus) || opts.cpus < 1) {
    throw new BootSetupError(`ACPI tables for ${String(opts.cpus)} vCPUs: need a positive integer`);
  }
  const tables: AcpiTableInfo[] = [];
  const parts: { at: number; bytes: Uint8Array }[] = [];
  let at = base;
  const place = (signature: string, bytes: Uint8Array, align: number) => {
    at = alignUp(at, align);
    const gpa = at;
    parts.push({ at: gpa, bytes });
    tables.push({ signature, gpa, length: bytes.length });
    at += bytes.length;
    return gpa;
  };

  // the RSDP goes first but names the XSDT/RSDT that come last: reserve its slot, fill it at the end
  const rsdp = place("RSD PTR ", new Uint8Array(RSDP_SIZE), 16);
  const facs = place("FACS", facsBytes(), 64);
  const dsdt = place(
    "DSDT",
    dsdtBytes({ s5SlpTyp: PC_ACPI.s5SlpTyp, ...(opts.virtioMmio ? { virtioMmio: opts.virtioMmio } : {}) }),
    16,
  );
  const fadt = place(
    "FACP",
    fadtBytes({
      facs,
      dsdt,
      sciIrq: PC_ACPI.sciIrq,
      pm1aEvt: PC_ACPI.pmBase,
      pm1aCnt: PC_ACPI.pmBase + 4,
      pmTmr: PC_ACPI.pmBase + 8,
      reset: { port: PC_ACPI.resetPort, value: PC_ACPI.resetValue },
      century: PC_ACPI.century,
      powerButton: true,
    }),
    16,
  );
  const madt = place(
    "APIC",
    madtBytes({
      localApicAddress: PC_ACPI.localApic,
      apicIds: Array.from({ length: opts.cpus }, (_, i) => i),
      ioApic: { id: PC_ACPI.ioApicId, address: PC_ACPI.ioApic, gsiBase: 0 },
      overrides: [
        { source: 0, gsi: 2, flags: INTI.CONFORMS },
        { source: PC_ACPI.sciIrq, gsi: PC_ACPI.sciIrq, flags: INTI.ACTIVE_HIGH | INTI.LEVEL },
      ],
      nmiLint: 1,
    }),
    16,
  );
  const xsdt = place("XSDT", xsdtBytes([fadt, madt]), 16);
  const rsdt = place("RSDT", rsdtBytes([fadt, madt]), 16);
  parts[0]!.bytes = rsdpBytes(rsdt, xsdt);

  const end = alignUp(at, PAGE);
  if (end > BIOS_AREA_END) {
    throw new BootSetupError(
      `the ACPI tables for ${opts.cpus} vCPUs run to ${hex(at)}, past the BIOS area's end ${hex(BIOS_AREA_END)}`,
    );
  }
  const bytes = new Uint8Array(at - base);
  for (const p of parts) bytes.set(p.bytes, p.at - base);
  const e820: E820Entry[] = [
    { addr: ISA_HOLE_START, size: base - ISA_HOLE_START, type: E820_RESERVED },
    { addr: base, size: end - base, type: E820_ACPI },
  ];
  if (end < HIGH_MEMORY) e820.push({ addr: end, size: HIGH_MEMORY - end, type: E820_RESERVED });
  return { rsdp, base, bytes, tables, e820 };
}

/** Writes the block into guest RAM (checked first: a BootSetupError leaves memory as it was). */
export function installPcAcpi(target: LoadTarget, acpi: PcAcpi): void {
  if (!target.find(acpi.base, acpi.bytes.length)) {
    throw new BootSetupError(
      `the ACPI tables at [${hex(acpi.base)}, ${hex(acpi.base + acpi.bytes.length)}) are not in guest RAM (${target.size} bytes)`,
    );
  }
  target.write(acpi.base, acpi.bytes);
}

/** The Linux options that carry the ACPI tables: the RSDP's address and the e820 entries. */
export interface AcpiLinuxFields {
  acpiRsdp?: number;
  e820?: readonly E820Entry[];
}

/**
 * Adds the PC's tables to a Linux load: the options get acpiRsdp and the e820 entries, and
 * `install` writes the tables once the load succeeded. Options that already name an RSDP (the
 * caller brings its own tables) pass through unchanged and `install` does nothing.
 */
export function withPcAcpi<T extends AcpiLinuxFields>(
  opts: T,
  cpus: number,
  virtioMmio: readonly VirtioMmioSlot[] = [],
): { options: T; install(target: LoadTarget): void } {
  if (opts.acpiRsdp !== undefined) return { options: opts, install: () => {} };
  const acpi = buildPcAcpi({ cpus, virtioMmio });
  return {
    options: { ...opts, acpiRsdp: acpi.rsdp, e820: [...(opts.e820 ?? []), ...acpi.e820] },
    install: (target) => installPcAcpi(target, acpi),
  };
}
