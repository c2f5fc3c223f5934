// x87 state images to and from MMIO (issue 13, "MMIO that completes"): FNSAVE/FRSTOR, FNSTENV/FLDENV,
// FSTP/FLD m80 and FBSTP/FBLD against the logging device, in real, protected and long mode. Each
// access must reach the device once, in address order, as one exit: the image is checked whole
// before its first write and read whole before a register changes, so no access is repeated when
// the instruction runs again after an exit. The pieces are the interpreter's (4 bytes, a 2-byte
// tail; 8+2 for an 80-bit operand), which KVM's emulator does not define (it has no x87 forms), so
// these cases live here and not in test/support/mmio-cases.ts.

import { describe, expect, it } from "vitest";
import { type F80, toF80 } from "../../lib/cpu/x87-regs.js";
import { type Access, type Code, MODES, RAM, runCase, WIN } from "../support/mmio-guests.js";

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const f80Bytes = ([lo, hi, se]: F80) => [...le32(lo), ...le32(hi), se & 0xff, se >> 8];
const hex = (v: bigint) => `0x${v.toString(16)}`;
const show = (log: readonly Access[], values = true) =>
  log.map(
    (a) => `${a.write ? "W" : "R"} ${a.addr.toString(16)}/${a.size}${values ? ` ${hex(a.value)}` : ""}`,
  );

/** the accesses of an image of `bytes` at `addr` in `sizes` pieces (RAM below WIN is not logged) */
function pieces(write: boolean, addr: number, bytes: number[], sizes: number[]): Access[] {
  const out: Access[] = [];
  let o = 0;
  for (const size of sizes) {
    let v = 0n;
    for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(bytes[o + k]!);
    if (addr + o >= WIN) out.push({ write, addr: addr + o, size, value: v });
    o += size;
  }
  return out;
}
const fours = (n: number) => [...new Array(n >> 2).fill(4), ...(n & 3 ? [2] : [])];

/** FNSAVE's image after fninit; fld1; fldpi on a fresh vCPU (ST2-7 are the zeroed R0-R5) */
function saveImage(wide: boolean, real: boolean): number[] {
  const env = wide
    ? [
        0xffff037f,
        0xffff3000,
        0xffff0fff,
        ...(real ? [0xffff0000, 0, 0xffff0000, 0] : [0, 0, 0, 0xffff0000]),
      ].flatMap(le32)
    : [0x37f, 0x3000, 0x0fff, 0, 0, 0, 0].flatMap((w) => [w & 0xff, w >> 8]);
  return [...env, ...f80Bytes(toF80(Math.PI)), ...f80Bytes(toF80(1)), ...new Array(60).fill(0)];
}

const f64le = (ram: Uint8Array, at: number) => new DataView(ram.buffer, ram.byteOffset).getFloat64(at, true);

describe("x87 images to and from MMIO complete exactly once (soft backend)", () => {
  for (const mode of MODES) {
    for (const wide of [true, false]) {
      it(`FNSAVE then FRSTOR, ${wide ? 108 : 94} bytes (${mode} mode)`, async () => {
        const body = (c: Code) => {
          const pre = wide ? c.o32 : c.o16;
          c.raw(0xdb, 0xe3, 0xd9, 0xe8, 0xd9, 0xeb); // fninit; fld1; fldpi
          c.abs(pre, [0xdd], 6, WIN); // fnsave [WIN]
          c.abs(pre, [0xdd], 4, WIN); // frstor [WIN]
          c.abs([], [0xdd], 3, RAM); // fstp qword [RAM]: pi
          c.abs([], [0xdd], 3, RAM + 8); // fstp qword [RAM+8]: 1
        };
        const run = await runCase("soft", mode, body);
        expect(run.reason, run.message).toBe("hlt");
        const img = saveImage(wide, mode === "real");
        const sizes = fours(img.length);
        const expected = [...pieces(true, WIN, img, sizes), ...pieces(false, WIN, img, sizes)];
        expect(show(run.log)).toEqual(show(expected));
        expect(show(run.exits, false)).toEqual(show(expected, false));
        expect([f64le(run.ram, 0), f64le(run.ram, 8)]).toEqual([Math.PI, 1]);
      });
    }

    it(`FNSTENV/FLDENV, FSTP/FLD m80 and FBSTP/FBLD (${mode} mode)`, async () => {
      const body = (c: Code) => {
        c.raw(0xdb, 0xe3, 0xd9, 0xe8); // fninit; fld1
        c.abs(c.o32, [0xd9], 6, WIN + 0x100); // fnstenv [WIN+0x100] (28 bytes)
        c.abs(c.o32, [0xd9], 4, WIN + 0x100); // fldenv
        c.raw(0xd9, 0xeb); // fldpi
        c.abs([], [0xdb], 7, WIN + 0x200); // fstp tword [WIN+0x200]
        c.abs([], [0xdb], 5, WIN + 0x200); // fld tword
        c.abs([], [0xdd], 3, RAM); // fstp qword [RAM]: pi
        c.abs([], [0xdf], 6, WIN + 0x300); // fbstp [WIN+0x300]: 1
        c.abs([], [0xdf], 4, WIN + 0x300); // fbld
        c.abs([], [0xdd], 3, RAM + 8); // fstp qword [RAM+8]: 1
      };
      const run = await runCase("soft", mode, body);
      expect(run.reason, run.message).toBe("hlt");
      const real = mode === "real";
      const env = [
        0xffff037f,
        0xffff3800,
        0xffff3fff,
        ...(real ? [0xffff0000, 0, 0xffff0000, 0] : [0, 0, 0, 0xffff0000]),
      ].flatMap(le32);
      const pi = f80Bytes(toF80(Math.PI));
      const one = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
      const expected = [
        ...pieces(true, WIN + 0x100, env, fours(28)),
        ...pieces(false, WIN + 0x100, env, fours(28)),
        ...pieces(true, WIN + 0x200, pi, [8, 2]),
        ...pieces(false, WIN + 0x200, pi, [8, 2]),
        ...pieces(true, WIN + 0x300, one, [8, 2]),
        ...pieces(false, WIN + 0x300, one, [8, 2]),
      ];
      expect(show(run.log)).toEqual(show(expected));
      expect(show(run.exits, false)).toEqual(show(expected, false));
      expect([f64le(run.ram, 0), f64le(run.ram, 8)]).toEqual([Math.PI, 1]);
    });

    it(`an FNSAVE image from RAM into MMIO (page-crossing) and back (${mode} mode)`, async () => {
      const body = (c: Code) => {
        c.raw(0xdb, 0xe3, 0xd9, 0xe8, 0xd9, 0xeb);
        c.abs(c.o32, [0xdd], 6, RAM + 8);
        c.abs(c.o32, [0xdd], 4, RAM + 8);
        c.abs([], [0xdd], 3, RAM); // fstp qword [RAM]: pi (over the image's first 8 bytes)
      };
      const run = await runCase("soft", mode, body);
      expect(run.reason, run.message).toBe("hlt");
      const img = saveImage(true, mode === "real");
      const expected = [
        ...pieces(true, RAM + 8, img, fours(108)),
        ...pieces(false, RAM + 8, img, fours(108)),
      ];
      expect(show(run.log)).toEqual(show(expected));
      expect(show(run.exits, false)).toEqual(show(expected, false));
      expect(f64le(run.ram, 0)).toBe(Math.PI);
    });
  }
});
