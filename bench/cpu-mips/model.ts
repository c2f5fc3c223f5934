// What the benchmark guests (bench/guests/mips-*.S) compute, in plain JavaScript, so that every
// engine's checksum can be checked against an independent model.

export type Mode = "real" | "prot" | "long";
export type Loop = "alu" | "mem";

/** instructions per loop iteration, and the ones between the 'S' and 'E' OUTs outside the loop
 * (the 'S' OUT itself, `mov al,'E'`, and for the memory loop the register save before it) */
export const LOOP_SHAPE: Record<Loop, { perIteration: number; extra: number }> = {
  alu: { perIteration: 5, extra: 2 },
  mem: { perIteration: 7, extra: 3 },
};

const u32 = (v: number) => v >>> 0;

/** 64-bit add on (hi, lo) halves */
function add64(ah: number, al: number, bh: number, bl: number): [number, number] {
  const lo = al + bl;
  return [u32(ah + bh + (lo > 0xffffffff ? 1 : 0)), u32(lo)];
}

export function expectedChecksum(mode: Mode, loop: Loop, n: number): number {
  if (mode === "real") {
    if (loop === "alu") {
      let bx = 0x1234;
      let dx = 0x5678;
      for (let i = 0; i < n; i++) {
        bx = (bx + dx) & 0xffff;
        dx ^= bx;
        bx = (bx + 0x3c5a) & 0xffff;
      }
      return u32((dx << 16) | bx);
    }
    const mem = new Uint8Array(0x1000);
    let si = 0;
    let ax = 0;
    for (let i = 0; i < n; i++) {
      ax = (mem[si]! | (mem[si + 1]! << 8)) + 0x1357;
      ax &= 0xffff;
      mem[si] = ax & 0xff;
      mem[si + 1] = ax >> 8;
      si = (si + 1) & 0x7ff;
    }
    return u32((si << 16) | ax);
  }
  if (mode === "prot") {
    if (loop === "alu") {
      let ebx = 0x12345678;
      let edx = 0x9abcdef0;
      for (let i = 0; i < n; i++) {
        ebx = u32(ebx + edx);
        edx = u32(edx ^ ebx);
        ebx = u32(ebx + 0x3c5a7e91);
      }
      return u32(ebx ^ edx);
    }
    const mem = new Uint32Array(1024);
    let esi = 0;
    let eax = 0;
    for (let i = 0; i < n; i++) {
      eax = u32(mem[esi]! + 0x13579bdf);
      mem[esi] = eax;
      esi = (esi + 1) & 0x3ff;
    }
    return u32(eax ^ esi);
  }
  if (loop === "alu") {
    let bh = 0x12345678;
    let bl = 0x9abcdef0;
    let dh = 0x0fedcba9;
    let dl = 0x87654321;
    for (let i = 0; i < n; i++) {
      [bh, bl] = add64(bh, bl, dh, dl);
      dh = u32(dh ^ bh);
      dl = u32(dl ^ bl);
      [bh, bl] = add64(bh, bl, 0, 0x3c5a7e91);
    }
    return u32(bh ^ dh ^ bl ^ dl);
  }
  const hi = new Uint32Array(512);
  const lo = new Uint32Array(512);
  let rsi = 0;
  let ah = 0;
  let al = 0;
  for (let i = 0; i < n; i++) {
    [ah, al] = add64(hi[rsi]!, lo[rsi]!, 0x13579bdf, 0x2468ace0);
    hi[rsi] = ah;
    lo[rsi] = al;
    rsi = (rsi + 1) & 0x1ff;
  }
  return u32(ah ^ al ^ rsi);
}
