// The FADT ("FACP", ACPI 6.0 section 5.2.9, revision 6) and the FACS it points at (5.2.10). The
// FADT tells the OS where the fixed-feature hardware is: the PM1a event and control blocks, the PM
// timer, the SCI line, the reset register; and that this is a PC with legacy devices and an 8042,
// not a hardware-reduced platform (we have a PIT and 8259s). SMI_CMD = 0 means the machine is
// always in ACPI mode (SCI_EN reads as set), so the OS never hands over from firmware.

import { BootSetupError } from "../errors.js";
import { GAS_SYSTEM_IO, type GenericAddress, sdtTable, sealTable, TableBytes } from "./sdt.js";

export const FADT_REVISION = 6;
export const FADT_MINOR_REVISION = 0;
/** FADT revision 6 is 276 bytes (0x114). */
export const FADT_SIZE = 276;

/** Field offsets (Table 5.9). */
export const FADT = {
  firmwareCtrl: 36,
  dsdt: 40,
  preferredPmProfile: 45,
  sciInt: 46,
  smiCmd: 48,
  acpiEnable: 52,
  acpiDisable: 53,
  pm1aEvtBlk: 56,
  pm1bEvtBlk: 60,
  pm1aCntBlk: 64,
  pm1bCntBlk: 68,
  pm2CntBlk: 72,
  pmTmrBlk: 76,
  gpe0Blk: 80,
  gpe1Blk: 84,
  pm1EvtLen: 88,
  pm1CntLen: 89,
  pm2CntLen: 90,
  pmTmrLen: 91,
  gpe0BlkLen: 92,
  gpe1BlkLen: 93,
  pLvl2Lat: 96,
  pLvl3Lat: 98,
  dayAlrm: 106,
  monAlrm: 107,
  century: 108,
  iapcBootArch: 109,
  flags: 112,
  resetReg: 116,
  resetValue: 128,
  armBootArch: 129,
  minorVersion: 131,
  xFirmwareCtrl: 132,
  xDsdt: 140,
  xPm1aEvtBlk: 148,
  xPm1bEvtBlk: 160,
  xPm1aCntBlk: 172,
  xPm1bCntBlk: 184,
  xPm2CntBlk: 196,
  xPmTmrBlk: 208,
  xGpe0Blk: 220,
  xGpe1Blk: 232,
  sleepControlReg: 244,
  sleepStatusReg: 256,
  hypervisorVendorId: 268,
} as const;

/** IAPC_BOOT_ARCH bits (Table 5.10). */
export const BOOT_ARCH = {
  LEGACY_DEVICES: 1 << 0,
  I8042: 1 << 1,
  VGA_NOT_PRESENT: 1 << 2,
  MSI_NOT_SUPPORTED: 1 << 3,
  PCIE_ASPM_CONTROLS: 1 << 4,
  CMOS_RTC_NOT_PRESENT: 1 << 5,
} as const;

/** FADT flags (Table 5.10). */
export const FADT_FLAGS = {
  WBINVD: 1 << 0,
  WBINVD_FLUSH: 1 << 1,
  PROC_C1: 1 << 2,
  P_LVL2_UP: 1 << 3,
  /** set: no fixed-feature power button (it is a control-method device, or absent) */
  PWR_BUTTON: 1 << 4,
  SLP_BUTTON: 1 << 5,
  /** set: the RTC alarm's status is not in the fixed register space */
  FIX_RTC: 1 << 6,
  RTC_S4: 1 << 7,
  TMR_VAL_EXT: 1 << 8,
  DCK_CAP: 1 << 9,
  RESET_REG_SUP: 1 << 10,
  SEALED_CASE: 1 << 11,
  HEADLESS: 1 << 12,
  CPU_SW_SLP: 1 << 13,
  PCI_EXP_WAK: 1 << 14,
  USE_PLATFORM_CLOCK: 1 << 15,
  S4_RTC_STS_VALID: 1 << 16,
  REMOTE_POWER_ON_CAPABLE: 1 << 17,
  FORCE_APIC_CLUSTER_MODEL: 1 << 18,
  FORCE_APIC_PHYSICAL_DESTINATION_MODE: 1 << 19,
  HW_REDUCED_ACPI: 1 << 20,
  LOW_POWER_S0_IDLE_CAPABLE: 1 << 21,
} as const;

/** P_LVL2_LAT above 100 and P_LVL3_LAT above 1000 say the C2 / C3 state is not supported. */
export const C2_NOT_SUPPORTED = 101;
export const C3_NOT_SUPPORTED = 1001;

export interface FadtOptions {
  facs: number;
  dsdt: number;
  /** ISA IRQ of the SCI */
  sciIrq: number;
  /** port of PM1a_EVT_BLK (4 bytes: status, enable) */
  pm1aEvt: number;
  /** port of PM1a_CNT_BLK (2 bytes) */
  pm1aCnt: number;
  /** port of PM_TMR_BLK (4 bytes, 24-bit timer) */
  pmTmr: number;
  /** I/O port and value of the reset register */
  reset: { port: number; value: number };
  /** CMOS index of the century byte, 0 for none */
  century: number;
  /** whether a fixed-feature power button sits in PM1 (PWRBTN_STS/EN) */
  powerButton: boolean;
}

const PM1_EVT_LEN = 4;
const PM1_CNT_LEN = 2;
const PM_TMR_LEN = 4;

const io = (address: number, bytes: number, accessSize: 1 | 2 | 3): GenericAddress => ({
  space: GAS_SYSTEM_IO,
  bitWidth: bytes * 8,
  accessSize,
  address,
});

export function fadtBytes(o: FadtOptions): Uint8Array {
  for (const [what, port] of [
    ["pm1aEvt", o.pm1aEvt],
    ["pm1aCnt", o.pm1aCnt],
    ["pmTmr", o.pmTmr],
    ["reset.port", o.reset.port],
  ] as const) {
    if (!Number.isInteger(port) || port <= 0 || port > 0xfffc) {
      throw new BootSetupError(`FADT ${what}: ${String(port)} is not an I/O port`);
    }
  }
  if (o.facs > 0xffff_ffff || o.dsdt > 0xffff_ffff || o.facs % 64 !== 0) {
    throw new BootSetupError("the FACS must be 64-byte aligned and the FACS and DSDT below 4 GiB");
  }
  const flags =
    FADT_FLAGS.WBINVD |
    FADT_FLAGS.PROC_C1 |
    (o.powerButton ? 0 : FADT_FLAGS.PWR_BUTTON) |
    FADT_FLAGS.SLP_BUTTON |
    FADT_FLAGS.FIX_RTC |
    FADT_FLAGS.RESET_REG_SUP;
  const t = sdtTable("FACP", FADT_SIZE, FADT_REVISION)
    // FIRMWARE_CTRL only: ACPI says X_FIRMWARE_CTRL must be 0 when FIRMWARE_CTRL is used and vice versa
    .u32(FADT.firmwareCtrl, o.facs)
    .u32(FADT.dsdt, o.dsdt)
    .u16(FADT.sciInt, o.sciIrq)
    .u32(FADT.smiCmd, 0)
    .u32(FADT.pm1aEvtBlk, o.pm1aEvt)
    .u32(FADT.pm1aCntBlk, o.pm1aCnt)
    .u32(FADT.pmTmrBlk, o.pmTmr)
    .u8(FADT.pm1EvtLen, PM1_EVT_LEN)
    .u8(FADT.pm1CntLen, PM1_CNT_LEN)
    .u8(FADT.pmTmrLen, PM_TMR_LEN)
    .u16(FADT.pLvl2Lat, C2_NOT_SUPPORTED)
    .u16(FADT.pLvl3Lat, C3_NOT_SUPPORTED)
    .u8(FADT.century, o.century)
    .u16(FADT.iapcBootArch, BOOT_ARCH.LEGACY_DEVICES | BOOT_ARCH.I8042 | BOOT_ARCH.VGA_NOT_PRESENT)
    .u32(FADT.flags, flags)
    .gas(FADT.resetReg, io(o.reset.port, 1, 1))
    .u8(FADT.resetValue, o.reset.value)
    .u8(FADT.minorVersion, FADT_MINOR_REVISION)
    .u64(FADT.xDsdt, o.dsdt)
    .gas(FADT.xPm1aEvtBlk, io(o.pm1aEvt, PM1_EVT_LEN, 2))
    .gas(FADT.xPm1aCntBlk, io(o.pm1aCnt, PM1_CNT_LEN, 2))
    .gas(FADT.xPmTmrBlk, io(o.pmTmr, PM_TMR_LEN, 3))
    .ascii(FADT.hypervisorVendorId, "nodevmm", 8);
  return sealTable(t);
}

/** The FACS has no checksum; it is 64 bytes, 64-byte aligned (Table 5.12). */
export const FACS_SIZE = 64;
export const FACS = {
  signature: 0,
  length: 4,
  hardwareSignature: 8,
  firmwareWakingVector: 12,
  globalLock: 16,
  flags: 20,
  xFirmwareWakingVector: 24,
  version: 32,
  ospmFlags: 36,
} as const;

export function facsBytes(): Uint8Array {
  return new TableBytes(FACS_SIZE)
    .ascii(FACS.signature, "FACS")
    .u32(FACS.length, FACS_SIZE)
    .u8(FACS.version, 2).bytes;
}
