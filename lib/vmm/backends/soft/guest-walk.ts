// Guest-linear -> guest-physical translation for the host's own emulation (string I/O operands),
// following the guest's paging mode: none, 32-bit (with PSE), PAE, or 4-level.

import type { GuestMemory } from "../../memory.js";

export interface PagingState {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

/** The guest-physical address of `linear`, or undefined when the guest's tables do not map it. */
export function guestTranslate(mem: GuestMemory, p: PagingState, linear: number): number | undefined {
  if (!(p.cr0 & 0x80000000n)) return linear;
  const read64 = (gpa: number): number | undefined => {
    if (!mem.find(gpa, 8)) return undefined;
    return mem.readU32(gpa) + mem.readU32(gpa + 4) * 2 ** 32;
  };
  const addrOf = (e: number): number => (e - (e % 4096)) % 2 ** 52;
  if (!(p.cr4 & 0x20n)) {
    // 32-bit paging
    const pdeAt = Number(p.cr3 & 0xfffff000n) + ((linear >>> 22) << 2);
    if (!mem.find(pdeAt, 4)) return undefined;
    const pde = mem.readU32(pdeAt);
    if (!(pde & 1)) return undefined;
    if (pde & 0x80 && p.cr4 & 0x10n) return ((pde & 0xffc00000) >>> 0) + (linear & 0x3fffff);
    const pteAt = (pde & 0xfffff000) + (((linear >>> 12) & 0x3ff) << 2);
    if (!mem.find(pteAt, 4)) return undefined;
    const pte = mem.readU32(pteAt);
    return pte & 1 ? ((pte & 0xfffff000) >>> 0) + (linear & 0xfff) : undefined;
  }
  const long = (p.efer & 0x400n) !== 0n;
  let table: number;
  let levels: number;
  if (long) {
    table = Number(p.cr3 & 0xffffffffff000n);
    levels = 4;
  } else {
    const pdpte = read64(Number(p.cr3 & 0xffffffe0n) + ((linear >>> 30) & 3) * 8);
    if (pdpte === undefined || !(pdpte % 2)) return undefined;
    table = addrOf(pdpte);
    levels = 2;
  }
  const lin = linear < 0 ? linear + 2 ** 64 : linear;
  for (let level = levels; level >= 1; level--) {
    const shift = 12 + 9 * (level - 1);
    const e = read64(table + (Math.floor(lin / 2 ** shift) % 512) * 8);
    if (e === undefined || !(e % 2)) return undefined;
    const large = Math.floor(e / 0x80) % 2 === 1;
    if (level === 1 || (large && level <= 3)) {
      const size = 2 ** shift;
      return addrOf(e) - (addrOf(e) % size) + (lin % size);
    }
    table = addrOf(e);
  }
  return undefined;
}
