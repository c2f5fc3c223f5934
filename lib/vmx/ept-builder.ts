// Host-side construction of EPT paging structures in host-physical memory (what a hypervisor does
// when it maps guest RAM). Uses 2-MiB pages where guest and host addresses are both aligned.

import { EPT_LARGE, EPT_MT_WB } from "./ept.js";
import type { HostMemory } from "./host-memory.js";

const PAGE = 4096;
const LARGE = 0x200000;
const TWO32 = 2 ** 32;

export class EptBuilder {
  readonly pml4: number;

  constructor(readonly memory: HostMemory) {
    this.pml4 = memory.allocatePage();
  }

  /** EPTP: write-back, 4-level walk, PML4 address. */
  get eptp(): bigint {
    return BigInt(this.pml4) | 6n | (3n << 3n);
  }

  #read(at: number): number {
    return this.memory.readU32(at) + this.memory.readU32(at + 4) * TWO32;
  }
  #write(at: number, value: number): void {
    this.memory.writeU32(at, value % TWO32);
    this.memory.writeU32(at + 4, Math.floor(value / TWO32));
  }

  /** the next-level table under an entry, creating it when absent */
  #table(at: number): number {
    const e = this.#read(at);
    if (e & 7) {
      if (e & EPT_LARGE) throw new RangeError("EPT: a large page already covers this range");
      return e - (e % PAGE);
    }
    const t = this.memory.allocatePage();
    this.#write(at, t + 7);
    return t;
  }

  #slot(table: number, gpa: number, shift: number): number {
    return table + (Math.floor(gpa / 2 ** shift) % 512) * 8;
  }

  /** Maps [gpa, gpa+size) to [hpa, hpa+size) with permissions (bit 0 R, 1 W, 2 X). */
  map(gpa: number, hpa: number, size: number, permissions = 7): void {
    if (gpa % PAGE || hpa % PAGE || size % PAGE) throw new RangeError("EPT mappings must be 4-KiB aligned");
    let off = 0;
    while (off < size) {
      const g = gpa + off;
      const h = hpa + off;
      const pdpt = this.#table(this.#slot(this.pml4, g, 39));
      const pd = this.#table(this.#slot(pdpt, g, 30));
      const pde = this.#slot(pd, g, 21);
      if (g % LARGE === 0 && h % LARGE === 0 && size - off >= LARGE && (this.#read(pde) & 7) === 0) {
        this.#write(pde, h + permissions + EPT_MT_WB + EPT_LARGE);
        off += LARGE;
        continue;
      }
      const pt = this.#table(pde);
      this.#write(this.#slot(pt, g, 12), h + permissions + EPT_MT_WB);
      off += PAGE;
    }
  }

  /** Writes a raw leaf entry for a 4-KiB page (tests build misconfigurations with it). */
  setLeaf(gpa: number, entry: bigint): void {
    const pdpt = this.#table(this.#slot(this.pml4, gpa, 39));
    const pd = this.#table(this.#slot(pdpt, gpa, 30));
    const pt = this.#table(this.#slot(pd, gpa, 21));
    this.memory.writeU64(this.#slot(pt, gpa, 12), entry);
  }
}
