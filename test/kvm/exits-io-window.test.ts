// The port-exit decode of one vCPU's kvm_run over many exits (runs everywhere): the decoder keeps
// the data window of single accesses between exits, so each exit must still get the window KVM
// named for it, whatever the exits before it were (string I/O, another offset, another size).

import { describe, expect, it } from "vitest";
import { KVM_EXIT, KvmRunDecoder, LAYOUTS } from "../../lib/kvm/index.js";

const F = LAYOUTS.kvm_run.fields;

describe("KvmRunDecoder port exits in a row", () => {
  it("each exit's data is the window at its data_offset, of size x count bytes", () => {
    const buf = new ArrayBuffer(3 * 4096);
    const dv = new DataView(buf);
    const bytes = new Uint8Array(buf);
    const decoder = new KvmRunDecoder(buf);
    const steps: { size: 1 | 2 | 4; count: number; offset: number }[] = [
      { size: 1, count: 1, offset: 4096 },
      { size: 1, count: 1, offset: 4096 },
      { size: 1, count: 2, offset: 4096 }, // string I/O at the same offset: a longer window
      { size: 1, count: 1, offset: 4096 },
      { size: 2, count: 1, offset: 4096 }, // same offset, another size
      { size: 2, count: 1, offset: 4200 }, // another offset
      { size: 4, count: 3, offset: 4200 },
      { size: 1, count: 1, offset: 4096 },
      { size: 2, count: 1, offset: 4200 },
    ];
    steps.forEach(({ size, count, offset }, i) => {
      dv.setUint32(F.exit_reason, KVM_EXIT.IO, true);
      dv.setUint8(F["io.direction"], i % 2);
      dv.setUint8(F["io.size"], size);
      dv.setUint16(F["io.port"], 0x100 + i, true);
      dv.setUint32(F["io.count"], count, true);
      dv.setBigUint64(F["io.data_offset"], BigInt(offset), true);
      for (let k = 0; k < size * count; k++) bytes[offset + k] = (i * 16 + k) & 0xff;
      const exit = decoder.decode();
      if (exit.kind !== "io") throw new Error(`step ${i}: ${exit.kind}`);
      expect(exit).toMatchObject({ direction: i % 2 ? "out" : "in", port: 0x100 + i, size, count });
      expect(exit.data.byteOffset).toBe(offset);
      expect(Array.from(exit.data)).toEqual(
        Array.from({ length: size * count }, (_, k) => (i * 16 + k) & 0xff),
      );
      // an IN's answer written through the view lands in kvm_run at the offset
      exit.data[0] = 0xa5;
      expect(bytes[offset]).toBe(0xa5);
    });
  });

  it("a port exit after other kinds decodes as one", () => {
    const buf = new ArrayBuffer(2 * 4096);
    const dv = new DataView(buf);
    const decoder = new KvmRunDecoder(buf);
    dv.setUint32(F.exit_reason, KVM_EXIT.HLT, true);
    expect(decoder.decode()).toEqual({ kind: "hlt", raw: { backend: "kvm", code: KVM_EXIT.HLT } });
    dv.setUint32(F.exit_reason, KVM_EXIT.IO, true);
    dv.setUint8(F["io.direction"], 1);
    dv.setUint8(F["io.size"], 1);
    dv.setUint16(F["io.port"], 0xe9, true);
    dv.setUint32(F["io.count"], 1, true);
    dv.setBigUint64(F["io.data_offset"], 4096n, true);
    expect(decoder.decode()).toMatchObject({
      kind: "io",
      direction: "out",
      port: 0xe9,
      size: 1,
      count: 1,
      raw: { backend: "kvm", code: KVM_EXIT.IO },
    });
  });
});
