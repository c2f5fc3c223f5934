// The DSDT: the AML the OS loads into its namespace. Ours holds only \_S5, the sleep-type values
// the OS writes to PM1a/PM1b_CNT.SLP_TYP to power off; the devices an OS finds on a PC without
// asking (COM1, i8042, RTC, PIT) it probes as legacy hardware, as the FADT's IAPC_BOOT_ARCH allows.

import { name, pkg, terms } from "./aml.js";
import { SDT_HEADER_SIZE, sdtTable, sealTable } from "./sdt.js";

/** Revision 2: integers in the namespace are 64-bit. */
export const DSDT_REVISION = 2;

export interface DsdtOptions {
  /** the SLP_TYP value PM1_CNT takes as S5 (soft off) */
  s5SlpTyp: number;
}

/** The DSDT's AML body: Name(\_S5, Package(){SLP_TYPa, SLP_TYPb, 0, 0}). */
export function dsdtAml(opts: DsdtOptions): Uint8Array {
  return terms([name("_S5", pkg([opts.s5SlpTyp, opts.s5SlpTyp, 0, 0]))]);
}

export function dsdtBytes(opts: DsdtOptions): Uint8Array {
  const aml = dsdtAml(opts);
  const t = sdtTable("DSDT", SDT_HEADER_SIZE + aml.length, DSDT_REVISION);
  t.set(SDT_HEADER_SIZE, aml);
  return sealTable(t);
}
