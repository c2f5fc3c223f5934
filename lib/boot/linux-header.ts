// The Linux x86 setup header (Documentation/arch/x86/boot.rst): where its fields sit in a bzImage
// (the same offsets they have in struct boot_params, the zero page), and the checks a loader makes
// on it before it touches guest memory.

import { GuestImageError, hex } from "./errors.js";

/** boot_flag at 0x1FE: the boot-sector signature 55 AA. */
export const LINUX_BOOT_FLAG = 0xaa55;
/** header at 0x202: "HdrS". */
export const LINUX_HEADER_MAGIC = 0x53726448;
/** Oldest protocol this loader takes: 2.06 has cmdline_size and the 32-bit protocol as documented. */
export const LINUX_MIN_PROTOCOL = 0x0206;

/** Setup-header fields: offset in the file, which is also their offset in boot_params. */
export const SETUP_HEADER = {
  setup_sects: { offset: 0x1f1, size: 1 },
  root_flags: { offset: 0x1f2, size: 2 },
  syssize: { offset: 0x1f4, size: 4 },
  ram_size: { offset: 0x1f8, size: 2 },
  vid_mode: { offset: 0x1fa, size: 2 },
  root_dev: { offset: 0x1fc, size: 2 },
  boot_flag: { offset: 0x1fe, size: 2 },
  jump: { offset: 0x200, size: 2 },
  header: { offset: 0x202, size: 4 },
  version: { offset: 0x206, size: 2 },
  realmode_swtch: { offset: 0x208, size: 4 },
  start_sys_seg: { offset: 0x20c, size: 2 },
  kernel_version: { offset: 0x20e, size: 2 },
  type_of_loader: { offset: 0x210, size: 1 },
  loadflags: { offset: 0x211, size: 1 },
  setup_move_size: { offset: 0x212, size: 2 },
  code32_start: { offset: 0x214, size: 4 },
  ramdisk_image: { offset: 0x218, size: 4 },
  ramdisk_size: { offset: 0x21c, size: 4 },
  bootsect_kludge: { offset: 0x220, size: 4 },
  heap_end_ptr: { offset: 0x224, size: 2 },
  ext_loader_ver: { offset: 0x226, size: 1 },
  ext_loader_type: { offset: 0x227, size: 1 },
  cmd_line_ptr: { offset: 0x228, size: 4 },
  initrd_addr_max: { offset: 0x22c, size: 4 },
  kernel_alignment: { offset: 0x230, size: 4 },
  relocatable_kernel: { offset: 0x234, size: 1 },
  min_alignment: { offset: 0x235, size: 1 },
  xloadflags: { offset: 0x236, size: 2 },
  cmdline_size: { offset: 0x238, size: 4 },
  hardware_subarch: { offset: 0x23c, size: 4 },
  hardware_subarch_data: { offset: 0x240, size: 8 },
  payload_offset: { offset: 0x248, size: 4 },
  payload_length: { offset: 0x24c, size: 4 },
  setup_data: { offset: 0x250, size: 8 },
  pref_address: { offset: 0x258, size: 8 },
  init_size: { offset: 0x260, size: 4 },
  handover_offset: { offset: 0x264, size: 4 },
  kernel_info_offset: { offset: 0x268, size: 4 },
} as const;
export type SetupHeaderField = keyof typeof SETUP_HEADER;

/** struct boot_params (the zero page) outside the setup header (arch/x86/include/uapi/asm/bootparam.h). */
export const BOOT_PARAMS = {
  size: 0x1000,
  screen_info: 0x000,
  acpi_rsdp_addr: 0x070,
  ext_ramdisk_image: 0x0c0,
  ext_ramdisk_size: 0x0c4,
  ext_cmd_line_ptr: 0x0c8,
  alt_mem_k: 0x1e0,
  scratch: 0x1e4,
  e820_entries: 0x1e8,
  sentinel: 0x1ef,
  hdr: 0x1f1,
  /** the setup header may not run past this (edd_mbr_sig_buffer) */
  hdr_end: 0x290,
  e820_table: 0x2d0,
} as const;

// loadflags / xloadflags bits
export const LOADED_HIGH = 1 << 0;
export const XLF_KERNEL_64 = 1 << 0;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
/** type_of_loader 0xFF: "undefined" boot loader (no registered id). */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** Selectors the boot protocol's GDT must provide. */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
/** The 64-bit entry point's offset from the load address. */
export const LINUX_ENTRY64_OFFSET = 0x200;
/** loadflags bit 7: heap_end_ptr is valid (the real-mode setup code may use a heap up to it). */
export const CAN_USE_HEAP = 1 << 7;

const SECTOR = 512;
const DEFAULT_SETUP_SECTS = 4;
const PAGE = 0x1000;

/** The fields of a kernel's setup header (Documentation/arch/x86/boot.rst) that the loader uses, decoded. */
export interface LinuxSetupHeader {
  /** protocol version, e.g. 0x020f for 2.15 */
  version: number;
  /** setup sectors after the boot sector (0 in the file means 4) */
  setupSects: number;
  /** file offset of the protected-mode kernel: (setup_sects + 1) * 512 */
  setupSize: number;
  /** end of the setup header in the file: 0x202 + the byte at 0x201 */
  headerEnd: number;
  /** Size of the protected-mode code in 16-byte units. */
  syssize: number;
  /** LOADED_HIGH (bit 0), KASLR_FLAG, QUIET_FLAG, KEEP_SEGMENTS, CAN_USE_HEAP (bit 7). */
  loadflags: number;
  /** The 32-bit entry point (where the protected-mode kernel is loaded). */
  code32Start: number;
  /** Highest address the initrd may end at (inclusive). */
  initrdAddrMax: number;
  /** Alignment a relocatable kernel needs, in bytes. */
  kernelAlignment: number;
  /** Whether the kernel may be loaded at any kernelAlignment-aligned address. */
  relocatable: boolean;
  /** 0 before protocol 2.12 */
  xloadflags: number;
  /** Longest command line the kernel takes, without the NUL (the header's cmdline_size, protocol 2.06+). */
  cmdlineSize: number;
  /** 0 before protocol 2.10 */
  prefAddress: number;
  /** 0 before protocol 2.10 */
  initSize: number;
}

export function protocolString(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, "0")}`;
}

/** True when the file has a Linux boot sector with a setup header: 55 AA at 0x1FE, "HdrS" at 0x202. */
export function hasBzImageHeader(image: Uint8Array): boolean {
  if (image.length < 0x206) return false;
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  return dv.getUint16(0x1fe, true) === LINUX_BOOT_FLAG && dv.getUint32(0x202, true) === LINUX_HEADER_MAGIC;
}

class HeaderReader {
  readonly #dv: DataView;
  constructor(readonly image: Uint8Array) {
    this.#dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  }
  /** a field's value; a file that ends inside the field is truncated, and the error names it */
  get(name: SetupHeaderField): number {
    const { offset, size } = SETUP_HEADER[name];
    if (offset + size > this.image.length) {
      throw new GuestImageError(
        name,
        offset,
        `the file (${hex(this.image.length)} bytes) ends inside the setup header: truncated?`,
      );
    }
    if (size === 1) return this.#dv.getUint8(offset);
    if (size === 2) return this.#dv.getUint16(offset, true);
    if (size === 4) return this.#dv.getUint32(offset, true);
    const v = this.#dv.getBigUint64(offset, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GuestImageError(name, offset, `value ${hex(v)} is absurd (beyond 2^53)`);
    }
    return Number(v);
  }
}

/** The last field a protocol version defines that this loader reads. */
function lastFieldFor(version: number): SetupHeaderField {
  return version >= 0x020a ? "init_size" : "cmdline_size";
}

/** Parses and checks the setup header and the file's shape; touches no guest memory. */
export function parseLinuxHeader(image: Uint8Array): LinuxSetupHeader {
  const r = new HeaderReader(image);
  const bootFlag = r.get("boot_flag");
  if (bootFlag !== LINUX_BOOT_FLAG) {
    throw new GuestImageError("boot_flag", 0x1fe, `${hex(bootFlag)} is not the boot-sector signature 0xaa55`);
  }
  const magic = r.get("header");
  if (magic !== LINUX_HEADER_MAGIC) {
    throw new GuestImageError(
      "header",
      0x202,
      `${hex(magic)} is not "HdrS": not a Linux kernel, or one older than boot protocol 2.00`,
    );
  }
  const version = r.get("version");
  if (version < LINUX_MIN_PROTOCOL) {
    throw new GuestImageError(
      "version",
      0x206,
      `boot protocol ${protocolString(version)} is older than ${protocolString(LINUX_MIN_PROTOCOL)}, the oldest this loader supports (kernel 2.6.22 and later)`,
    );
  }
  const headerEnd = 0x202 + (image[0x201] ?? 0);
  const last = lastFieldFor(version);
  const needEnd = SETUP_HEADER[last].offset + SETUP_HEADER[last].size;
  if (headerEnd < needEnd) {
    throw new GuestImageError(
      "jump",
      0x200,
      `the setup header ends at ${hex(headerEnd)} (0x202 + byte ${hex(image[0x201] ?? 0)} at 0x201), before ${last} at ${hex(SETUP_HEADER[last].offset)} that protocol ${protocolString(version)} has`,
    );
  }
  const setupSectsRaw = r.get("setup_sects");
  const syssize = r.get("syssize");
  const loadflags = r.get("loadflags");
  const code32Start = r.get("code32_start");
  const initrdAddrMax = r.get("initrd_addr_max");
  const kernelAlignment = r.get("kernel_alignment");
  const relocatable = r.get("relocatable_kernel") !== 0;
  const xloadflags = version >= 0x020c ? r.get("xloadflags") : 0;
  const cmdlineSize = r.get("cmdline_size");
  const prefAddress = version >= 0x020a ? r.get("pref_address") : 0;
  const initSize = version >= 0x020a ? r.get("init_size") : 0;

  const setupSects = setupSectsRaw === 0 ? DEFAULT_SETUP_SECTS : setupSectsRaw;
  const setupSize = (setupSects + 1) * SECTOR;
  if (setupSize > image.length) {
    throw new GuestImageError(
      "setup_sects",
      0x1f1,
      `${setupSects} setup sectors put the protected-mode kernel at ${hex(setupSize)}, beyond the end of the file (${hex(image.length)} bytes): truncated, or setup_sects is wrong`,
    );
  }
  const pmSize = image.length - setupSize;
  if (pmSize === 0) {
    throw new GuestImageError(
      "syssize",
      0x1f4,
      `the file ends right after the ${setupSects} setup sectors: there is no protected-mode kernel`,
    );
  }
  if (syssize === 0 || syssize * 16 > pmSize) {
    throw new GuestImageError(
      "syssize",
      0x1f4,
      syssize === 0
        ? "is 0: the protected-mode kernel has no size"
        : `says ${hex(syssize * 16)} bytes of protected-mode kernel but the file has ${hex(pmSize)} after the ${setupSects} setup sectors: truncated, or setup_sects is wrong`,
    );
  }
  if (!(loadflags & LOADED_HIGH)) {
    throw new GuestImageError(
      "loadflags",
      0x211,
      "LOADED_HIGH is clear: this is a zImage (protected-mode code at 0x10000), which this loader does not support; build a bzImage",
    );
  }
  if (relocatable && (kernelAlignment < PAGE || (kernelAlignment & (kernelAlignment - 1)) !== 0)) {
    throw new GuestImageError(
      "kernel_alignment",
      0x230,
      `${hex(kernelAlignment)} is not a power of two of at least 4 KiB`,
    );
  }
  return {
    version,
    setupSects,
    setupSize,
    headerEnd,
    syssize,
    loadflags,
    code32Start,
    initrdAddrMax,
    kernelAlignment,
    relocatable,
    xloadflags,
    cmdlineSize,
    prefAddress,
    initSize,
  };
}
