// The MADT ("APIC", ACPI 6.0 section 5.2.12): the local APIC address, PCAT_COMPAT (there are
// 8259s too), one Processor Local APIC entry per vCPU, the I/O APIC, the interrupt source overrides
// every PC firmware gives (ISA IRQ 0, the PIT, arrives on GSI 2; the SCI is level, active high) and
// the local APICs' NMI line (LINT1). Both backends route interrupts this way: KVM's GSI routing and
// the soft backend's PcInterrupts send IRQ 0 to I/O APIC pin 2.

import { BootSetupError } from "../errors.js";
import { SDT_HEADER_SIZE, sdtTable, sealTable } from "./sdt.js";

/** Revision 4 (ACPI 6.0-6.2). */
export const MADT_REVISION = 4;
export const PCAT_COMPAT = 1;

/** Interrupt controller structure types and their lengths (Table 5.45). */
export const MADT_TYPE = {
  LOCAL_APIC: 0,
  IO_APIC: 1,
  INTERRUPT_OVERRIDE: 2,
  LOCAL_APIC_NMI: 4,
} as const;
export const MADT_ENTRY_LENGTH = { 0: 8, 1: 12, 2: 10, 4: 6 } as const;
export const LOCAL_APIC_ENABLED = 1;

/** MPS INTI flags: polarity bits 1:0 (1 active high, 3 active low), trigger bits 3:2 (1 edge, 3 level). */
export const INTI = {
  CONFORMS: 0,
  ACTIVE_HIGH: 1,
  ACTIVE_LOW: 3,
  EDGE: 1 << 2,
  LEVEL: 3 << 2,
} as const;

export interface InterruptOverride {
  /** ISA IRQ */
  source: number;
  gsi: number;
  /** INTI flags */
  flags: number;
}

export interface MadtOptions {
  localApicAddress: number;
  /** APIC ID of each processor, in ACPI processor UID order */
  apicIds: readonly number[];
  ioApic: { id: number; address: number; gsiBase: number };
  overrides: readonly InterruptOverride[];
  /** LINT pin of the local APICs' NMI (all processors) */
  nmiLint: number;
}

const MADT_BODY = SDT_HEADER_SIZE + 8;

export function madtBytes(o: MadtOptions): Uint8Array {
  if (o.apicIds.length === 0 || o.apicIds.length > 255) {
    throw new BootSetupError(`the MADT lists 1-255 xAPIC processors, not ${o.apicIds.length}`);
  }
  for (const id of o.apicIds) {
    if (!Number.isInteger(id) || id < 0 || id > 254) {
      throw new BootSetupError(`APIC ID ${String(id)} is not 0-254 (255 is the broadcast ID)`);
    }
  }
  const length =
    MADT_BODY +
    o.apicIds.length * MADT_ENTRY_LENGTH[0] +
    MADT_ENTRY_LENGTH[1] +
    o.overrides.length * MADT_ENTRY_LENGTH[2] +
    MADT_ENTRY_LENGTH[4];
  const t = sdtTable("APIC", length, MADT_REVISION)
    .u32(SDT_HEADER_SIZE, o.localApicAddress)
    .u32(SDT_HEADER_SIZE + 4, PCAT_COMPAT);
  let at = MADT_BODY;
  o.apicIds.forEach((id, uid) => {
    t.u8(at, MADT_TYPE.LOCAL_APIC)
      .u8(at + 1, 8)
      .u8(at + 2, uid)
      .u8(at + 3, id)
      .u32(at + 4, LOCAL_APIC_ENABLED);
    at += 8;
  });
  t.u8(at, MADT_TYPE.IO_APIC)
    .u8(at + 1, 12)
    .u8(at + 2, o.ioApic.id)
    .u32(at + 4, o.ioApic.address)
    .u32(at + 8, o.ioApic.gsiBase);
  at += 12;
  for (const ov of o.overrides) {
    // bus 0: ISA
    t.u8(at, MADT_TYPE.INTERRUPT_OVERRIDE)
      .u8(at + 1, 10)
      .u8(at + 2, 0)
      .u8(at + 3, ov.source)
      .u32(at + 4, ov.gsi)
      .u16(at + 8, ov.flags);
    at += 10;
  }
  // processor UID 0xFF: all processors
  t.u8(at, MADT_TYPE.LOCAL_APIC_NMI)
    .u8(at + 1, 6)
    .u8(at + 2, 0xff)
    .u16(at + 3, INTI.CONFORMS)
    .u8(at + 5, o.nmiLint);
  return sealTable(t);
}
