// A MOV to CR3 drops every translation that is not global (SDM Vol. 3A 4.10.4.1) whatever else
// the TLB holds: a read entry and a fetch entry may share a slot of the interpreter's TLB while
// translating different pages, one global and the other not. Here a read of a non-global page
// fills a slot, a fetch from a global page at the same slot follows, the page's mapping changes and
// CR3 is reloaded: the next read must see the new mapping.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { hex, loggedVector, makeGuest, PML4 } from "./guest.js";

const PD = PML4 + 0x2000;
const PAE = 0x20;
const PGE = 0x80;
/** 2 MiB page at 20 MiB (TLB slot of page 0x1400): mapped non-global, first to 6 MiB, then 2 MiB */
const DATA_LIN = 0x1400000;
/** 2 MiB page at 4 MiB (TLB slot of page 0x400, the same): mapped global, holds code */
const CODE_LIN = 0x400000;

function w32(ram: Uint8Array, a: number, v: number): void {
  new DataView(ram.buffer, ram.byteOffset).setUint32(a, v >>> 0, true);
}

describe("MOV to CR3 and global pages", () => {
  for (const blocks of [true, false]) {
    it(`drops a non-global read translation whose TLB slot a global fetch used since (${blocks ? "blocks" : "single steps"})`, () => {
      const g = makeGuest(
        "long",
        // mov eax, [DATA_LIN]; mov rcx, CODE_LIN; jmp rcx
        hex("8b 04 25 00 00 40 01  48 b9 00 00 40 00 00 00 00 00  ff e1"),
      );
      g.cpu.decodeCache = blocks;
      // mov dword [PD + 10 * 8], 0x200087; mov rbx, cr3; mov cr3, rbx; mov edx, [DATA_LIN]; hlt
      g.ram.set(
        hex("c7 04 25 50 20 02 00 87 00 20 00  0f 20 db  0f 22 db  8b 14 25 00 00 40 01  f4"),
        CODE_LIN,
      );
      w32(g.ram, PD + 8 * (DATA_LIN >> 21), 0x600000 | 0x87);
      w32(g.ram, PD + 8 * (CODE_LIN >> 21), CODE_LIN | 0x187);
      w32(g.ram, 0x600000, 0x22222222);
      w32(g.ram, 0x200000, 0x33333333);
      g.cpu.setControl("cr4", BigInt(PAE | PGE));
      expect(g.run()).toBe(StopReason.Halted);
      expect(loggedVector(g)).toBe(-1);
      expect(g.cpu.getGpr(0)).toBe(0x22222222n);
      expect(g.cpu.getGpr(2)).toBe(0x33333333n);
    });
  }
});
