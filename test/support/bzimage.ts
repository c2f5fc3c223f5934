// A synthetic bzImage: a setup header with chosen version, flags and fields, and a protected-mode
// part holding a tiny guest (32-bit entry at 0, 64-bit entry at 0x200) that reads the zero page
// through RSI and reports what it saw on port 0xE9 (used by the loader's and the CLI's tests).

import { BOOT_PARAMS, SETUP_HEADER } from "../../lib/boot/index.js";

// Mode-neutral code (the same bytes mean the same in 32- and 64-bit mode; no REX prefixes), one
// instruction group a line:
export const REPORT = [
  // mov eax,cs; out 0xe9,al: the CS selector
  [0x8c, 0xc8, 0xe6, 0xe9],
  // mov eax,ds; out 0xe9,al: the DS selector
  [0x8c, 0xd8, 0xe6, 0xe9],
  // mov al,[rsi+0x1e8]; out 0xe9,al: e820_entries
  [0x8a, 0x86, 0xe8, 0x01, 0x00, 0x00, 0xe6, 0xe9],
  // mov al,[rsi+0x210]; out 0xe9,al: type_of_loader
  [0x8a, 0x86, 0x10, 0x02, 0x00, 0x00, 0xe6, 0xe9],
  // mov edi,[rsi+0x228]; mov al,[rdi]; out 0xe9,al: the command line's first byte
  [0x8b, 0xbe, 0x28, 0x02, 0x00, 0x00, 0x8a, 0x07, 0xe6, 0xe9],
  // mov edi,[rsi+0x218]; mov al,[rdi]; out 0xe9,al: the initrd's first byte
  [0x8b, 0xbe, 0x18, 0x02, 0x00, 0x00, 0x8a, 0x07, 0xe6, 0xe9],
  // mov eax,cr0; shr eax,24; out 0xe9,al: 0x80 when paging is on
  [0x0f, 0x20, 0xc0, 0xc1, 0xe8, 0x18, 0xe6, 0xe9],
  // push eax; pop eax (the stack works); mov al,0x2a; out 0xf4,al (isa-debug-exit); hlt
  [0x50, 0x58, 0xb0, 0x2a, 0xe6, 0xf4, 0xf4],
].flat();
export const ENTRY32 = [0xb0, 0x33, 0xe6, 0xe9, ...REPORT]; // '3'
export const ENTRY64 = [0xb0, 0x36, 0xe6, 0xe9, ...REPORT]; // '6'

export function payload(size = 0x1000): Uint8Array {
  const pm = new Uint8Array(size);
  for (let i = 0; i < pm.length; i++) pm[i] = (i * 13 + 5) & 0xff;
  pm.set(ENTRY32, 0);
  pm.set(ENTRY64, 0x200);
  return pm;
}

export interface BzSpec {
  version?: number;
  setupSects?: number;
  syssize?: number;
  loadflags?: number;
  xloadflags?: number;
  relocatable?: boolean;
  kernelAlignment?: number;
  prefAddress?: number;
  initSize?: number;
  initrdAddrMax?: number;
  cmdlineSize?: number;
  /** byte at 0x201: the setup header ends at 0x202 + this */
  jumpByte?: number;
  pm?: Uint8Array;
}

export const HDR = (name: keyof typeof SETUP_HEADER) => SETUP_HEADER[name].offset;

/** A bzImage in the shape arch/x86/boot/tools/build.c writes: boot sector + setup sectors + kernel. */
export function bzImage(spec: BzSpec = {}): Uint8Array {
  const sects = spec.setupSects ?? 4;
  const pm = spec.pm ?? payload();
  const setupSize = ((sects === 0 ? 4 : sects) + 1) * 512;
  const out = new Uint8Array(setupSize + pm.length);
  const dv = new DataView(out.buffer);
  // setup code filler, so a loader copying too much of it into the zero page shows
  for (let i = 0x290; i < setupSize; i++) out[i] = 0xcc;
  out[BOOT_PARAMS.sentinel] = 0xff; // header.S sets it: a loader must not copy it
  out[HDR("setup_sects")] = sects;
  dv.setUint32(HDR("syssize"), spec.syssize ?? Math.floor(pm.length / 16), true);
  dv.setUint16(HDR("vid_mode"), 0xffff, true);
  dv.setUint16(HDR("boot_flag"), 0xaa55, true);
  out[0x200] = 0xeb;
  out[0x201] = spec.jumpByte ?? 0x6a;
  dv.setUint32(HDR("header"), 0x53726448, true);
  dv.setUint16(HDR("version"), spec.version ?? 0x020f, true);
  out[HDR("loadflags")] = spec.loadflags ?? 0x01;
  dv.setUint32(HDR("code32_start"), 0x100000, true);
  dv.setUint32(HDR("initrd_addr_max"), spec.initrdAddrMax ?? 0x7fffffff, true);
  dv.setUint32(HDR("kernel_alignment"), spec.kernelAlignment ?? 0x200000, true);
  out[HDR("relocatable_kernel")] = (spec.relocatable ?? true) ? 1 : 0;
  out[HDR("min_alignment")] = 21;
  dv.setUint16(HDR("xloadflags"), spec.xloadflags ?? 0x3, true);
  dv.setUint32(HDR("cmdline_size"), spec.cmdlineSize ?? 0x7ff, true);
  dv.setBigUint64(HDR("pref_address"), BigInt(spec.prefAddress ?? 0x200000), true);
  dv.setUint32(HDR("init_size"), spec.initSize ?? 0x100000, true);
  out.set(pm, setupSize);
  return out;
}
