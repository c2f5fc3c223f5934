// The DSDT: the AML the OS loads into its namespace. Ours holds only \_S5, the sleep-type values
// the OS writes to PM1a/PM1b_CNT.SLP_TYP to power off; the devices an OS finds on a PC without
// asking (COM1, i8042, RTC, PIT) it probes as legacy hardware, as the FADT's IAPC_BOOT_ARCH allows.

import {
  device,
  extendedInterrupt,
  memory32Fixed,
  name,
  pkg,
  resourceTemplate,
  scope,
  terms,
} from "./aml.js";
import { SDT_HEADER_SIZE, sdtTable, sealTable } from "./sdt.js";

/** Revision 2: integers in the namespace are 64-bit. */
export const DSDT_REVISION = 2;

/** A virtio-mmio device's window and interrupt line, as the machine placed it. */
export interface VirtioMmioSlot {
  base: number;
  length: number;
  irq: number;
}

export interface DsdtOptions {
  /** the SLP_TYP value PM1_CNT takes as S5 (soft off) */
  s5SlpTyp: number;
  /** virtio-mmio devices to describe, as Cloud Hypervisor does (_HID LNRO0005) */
  virtioMmio?: readonly VirtioMmioSlot[];
}

/**
 * The DSDT's AML body: Name(\_S5, Package(){SLP_TYPa, SLP_TYPb, 0, 0}), and under \_SB one
 * Device per virtio-mmio window (_HID "LNRO0005", which Linux's virtio_mmio driver matches, with
 * the window and its level-triggered line in _CRS): kernels whose virtio_mmio takes no devices
 * from the command line (Debian's) find them this way.
 */
export function dsdtAml(opts: DsdtOptions): Uint8Array {
  const virtio = (opts.virtioMmio ?? []).map((v, i) =>
    device(`V${i.toString(16).toUpperCase().padStart(3, "0")}`, [
      name("_HID", "LNRO0005"),
      name("_UID", i),
      name(
        "_CRS",
        resourceTemplate([
          memory32Fixed(v.base, v.length),
          extendedInterrupt(v.irq, { edge: false, activeLow: false }),
        ]),
      ),
    ]),
  );
  return terms([
    name("_S5", pkg([opts.s5SlpTyp, opts.s5SlpTyp, 0, 0])),
    ...(virtio.length ? [scope("\\_SB", virtio)] : []),
  ]);
}

export function dsdtBytes(opts: DsdtOptions): Uint8Array {
  const aml = dsdtAml(opts);
  const t = sdtTable("DSDT", SDT_HEADER_SIZE + aml.length, DSDT_REVISION);
  t.set(SDT_HEADER_SIZE, aml);
  return sealTable(t);
}
