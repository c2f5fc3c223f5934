import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  F,
  FIELDS,
  FieldType,
  FieldWidth,
  HostMemory,
  LogicalProcessor,
  resolveField,
  VMCS_REGION_SIZE,
  VmxInstructionError,
} from "../../lib/vmx/index.js";
import { FakeCpu } from "./fake-cpu.js";
import { newRegion, rig } from "./setup.js";

const ALL = 0xffffffffffffffffn;
const widthBits = (w: FieldWidth) => (w === FieldWidth.W16 ? 16 : w === FieldWidth.W32 ? 32 : 64);

describe("the VMCS field table", () => {
  it("takes every field's width and type from its encoding", () => {
    expect(FIELDS.length).toBeGreaterThan(150);
    for (const f of FIELDS) {
      expect(f.width).toBe((f.encoding >> 13) & 3);
      expect(f.type).toBe((f.encoding >> 10) & 3);
      expect(f.readOnly).toBe(f.type === FieldType.ExitInfo);
    }
    expect(resolveField(F.GUEST_RIP)?.info.width).toBe(FieldWidth.Natural);
    expect(resolveField(F.VPID)?.info.width).toBe(FieldWidth.W16);
    expect(resolveField(F.EPT_POINTER + 1)?.high).toBe(true);
    expect(resolveField(F.GUEST_RIP + 1)).toBeUndefined();
  });

  it("VMWRITE truncates to the field width and VMREAD zero-extends; read-only fields refuse writes", () => {
    const { lp } = rig();
    for (const f of FIELDS) {
      if (f.readOnly) {
        expect(() => lp.vmwrite(f.encoding, ALL)).toThrow(expect.objectContaining({ number: 13 }));
        continue;
      }
      lp.vmwrite(f.encoding, ALL);
      expect(lp.vmread(f.encoding)).toBe((1n << BigInt(widthBits(f.width))) - 1n);
    }
  });

  it("64-bit fields are reachable as full and high", () => {
    const { lp } = rig();
    for (const f of FIELDS.filter((x) => x.width === FieldWidth.W64 && !x.readOnly)) {
      lp.vmwrite(f.encoding, 0x1111_2222_3333_4444n);
      expect(lp.vmread(f.encoding + 1)).toBe(0x1111_2222n);
      lp.vmwrite(f.encoding + 1, 0xaaaa_bbbb_cccc_ddddn);
      expect(lp.vmread(f.encoding)).toBe(0xcccc_dddd_3333_4444n);
    }
    for (const f of FIELDS.filter((x) => x.width !== FieldWidth.W64)) {
      expect(() => lp.vmread(f.encoding + 1)).toThrow(expect.objectContaining({ number: 12 }));
    }
  });
});

describe("property: VMX instruction sequences", () => {
  const encodings = [...FIELDS.map((f) => f.encoding), 0x2001, 0x6801, 0x1234, 0xffff_ffff, 0x2032 + 2];
  const op = fc.oneof(
    fc.record({
      k: fc.constant("write" as const),
      enc: fc.constantFrom(...encodings),
      v: fc.bigInt(0n, ALL),
    }),
    fc.record({ k: fc.constant("read" as const), enc: fc.constantFrom(...encodings) }),
    fc.record({ k: fc.constant("ptrld" as const), which: fc.nat(3) }),
    fc.record({ k: fc.constant("clear" as const), which: fc.nat(3) }),
    fc.record({ k: fc.constant("launch" as const), resume: fc.boolean() }),
  );

  it("never throw anything but the architectural outcomes", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const r = rig();
        r.cpu.program[0] = (c) => (c.hooks?.hlt({ length: 1, linearRip: 0 }) ? "exit" : "halt");
        r.lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, r.lp.vmread(F.CPU_BASED_VM_EXEC_CONTROL) | (1n << 7n));
        // region 0 is the rig's VMCS, 1 a fresh one, 2 the VMXON region, 3 garbage
        const regions = [r.vmcs, newRegion(r.mem), r.vmxon, 0x1234];
        for (const o of ops) {
          try {
            if (o.k === "write") r.lp.vmwrite(o.enc, o.v);
            else if (o.k === "read") r.lp.vmread(o.enc);
            else if (o.k === "ptrld") r.lp.vmptrld(regions[o.which]!);
            else if (o.k === "clear") r.lp.vmclear(regions[o.which]!);
            else {
              const reason = o.resume ? r.lp.vmresume() : r.lp.vmlaunch();
              expect(reason >>> 0).toBeLessThan(2 ** 32);
            }
          } catch (e) {
            if (!(e instanceof VmxInstructionError)) throw e;
            expect([0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]).toContain(e.number);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it("a VMCS round-trips through VMCLEAR + VMPTRLD bit for bit", () => {
    const writable = FIELDS.filter((f) => !f.readOnly);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...writable), fc.bigInt(0n, ALL)), { maxLength: 40 }),
        (writes) => {
          const mem = new HostMemory();
          const lp = new LogicalProcessor({ memory: mem, cpu: new FakeCpu() });
          const other = new LogicalProcessor({ memory: mem, cpu: new FakeCpu() });
          lp.vmxon(newRegion(mem));
          other.vmxon(newRegion(mem));
          const v = newRegion(mem);
          lp.vmptrld(v);
          for (const [f, value] of writes) lp.vmwrite(f.encoding, value);
          const before = FIELDS.map((f) => lp.vmread(f.encoding));
          lp.vmclear(v);
          const region = mem.read(v, VMCS_REGION_SIZE);
          other.vmptrld(v);
          expect(FIELDS.map((f) => other.vmread(f.encoding))).toEqual(before);
          other.vmclear(v);
          expect(mem.read(v, VMCS_REGION_SIZE)).toEqual(region);
        },
      ),
      { numRuns: 30 },
    );
  });
});
