// Reads guest-linear memory the way the processor's instruction fetch does, without side effects:
// the guest's paging (none, 32-bit with PSE, PAE, 4-level) over guest-physical memory, and EPT
// below it. Used at VM exit to decode the exiting instruction for the instruction-information field.

import type { GuestCpu } from "../cpu/guest-cpu.js";
import { EPT_OK, EPT_READ, eptWalk } from "./ept.js";
import type { HostMemory } from "./host-memory.js";

const TWO32 = 2 ** 32;

export class GuestLinearReader {
  readonly #cr0: bigint;
  readonly #cr3: bigint;
  readonly #cr4: bigint;
  readonly #lma: boolean;

  constructor(
    readonly memory: HostMemory,
    cpu: GuestCpu,
    /** EPTP when EPT is enabled: guest-physical addresses go through it */
    readonly eptp: bigint | undefined,
  ) {
    this.#cr0 = cpu.getControl("cr0");
    this.#cr3 = cpu.getControl("cr3");
    this.#cr4 = cpu.getControl("cr4");
    this.#lma = (cpu.getControl("efer") & 0x400n) !== 0n;
  }

  /** host-physical address of a guest-physical one, undefined when not RAM */
  #host(gpa: number): number | undefined {
    if (this.eptp === undefined) return this.memory.isBacked(gpa) ? gpa : undefined;
    const walk = eptWalk(this.memory, this.eptp, gpa, EPT_READ);
    return walk.status === EPT_OK && this.memory.isBacked(walk.hpa) ? walk.hpa : undefined;
  }

  /** a paging-structure entry as its two 32-bit halves (a single number would lose bits to NX) */
  #entry(gpa: number, wide: boolean): { lo: number; hi: number } | undefined {
    const at = this.#host(gpa);
    if (at === undefined || !this.memory.isBacked(at, wide ? 8 : 4)) return undefined;
    return { lo: this.memory.readU32(at), hi: wide ? this.memory.readU32(at + 4) : 0 };
  }

  /** guest-physical address of `linear` (a non-negative number below 2^64), undefined when unmapped */
  translate(linear: number): number | undefined {
    if (!(this.#cr0 & 0x80000000n)) return linear % TWO32;
    if (!(this.#cr4 & 0x20n)) {
      // 32-bit paging, 4-MiB pages with CR4.PSE
      const low = linear % TWO32;
      const pde = this.#entry(Number(this.#cr3 & 0xfffff000n) + Math.floor(low / 2 ** 22) * 4, false);
      if (!pde || !(pde.lo & 1)) return undefined;
      if (pde.lo & 0x80 && this.#cr4 & 0x10n) return ((pde.lo & 0xffc00000) >>> 0) + (low % 2 ** 22);
      const pte = this.#entry(((pde.lo & 0xfffff000) >>> 0) + ((low >>> 12) & 0x3ff) * 4, false);
      return pte && pte.lo & 1 ? ((pte.lo & 0xfffff000) >>> 0) + (low % 4096) : undefined;
    }
    // bits 51:12 of an entry (MAXPHYADDR at most 52)
    const addrOf = (e: { lo: number; hi: number }): number =>
      (e.hi & 0xfffff) * TWO32 + ((e.lo & 0xfffff000) >>> 0);
    let table: number;
    let levels: number;
    if (this.#lma) {
      table = Number(this.#cr3 & 0xffffffffff000n);
      levels = 4;
    } else {
      const pdpte = this.#entry(
        Number(this.#cr3 & 0xffffffe0n) + (Math.floor(linear / 2 ** 30) % 4) * 8,
        true,
      );
      if (!pdpte || !(pdpte.lo & 1)) return undefined;
      table = addrOf(pdpte);
      levels = 2;
    }
    for (let level = levels; level >= 1; level--) {
      const shift = 12 + 9 * (level - 1);
      const e = this.#entry(table + (Math.floor(linear / 2 ** shift) % 512) * 8, true);
      if (!e || !(e.lo & 1)) return undefined;
      if (level === 1 || (e.lo & 0x80 && level <= 3)) {
        const size = 2 ** shift;
        const frame = addrOf(e);
        return frame - (frame % size) + (linear % size);
      }
      table = addrOf(e);
    }
    return undefined;
  }

  /** `length` bytes at `linear`, or undefined when any of them is unmapped */
  read(linear: number, length: number): Uint8Array | undefined {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; ) {
      const lin = (linear + i) % 2 ** 64;
      const gpa = this.translate(lin);
      const hpa = gpa === undefined ? undefined : this.#host(gpa);
      if (hpa === undefined) return undefined;
      const n = Math.min(length - i, 4096 - (lin % 4096));
      for (let k = 0; k < n; k++) {
        if (!this.memory.isBacked(hpa + k)) return undefined;
        out[i + k] = this.memory.readU8(hpa + k);
      }
      i += n;
    }
    return out;
  }
}
