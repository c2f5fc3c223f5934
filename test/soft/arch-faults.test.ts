// Guest writes that must fault, not break the VM (issue 13): on the soft backend the guest runs in
// VMX non-root operation, where some of these writes are the interpreter's to check and some exit
// to the soft hypervisor (CR0.NE, CR4.VMXE, EFER, PAT, VMCALL/CPUID completions). Either way the
// guest takes #GP or #UD as the SDM says and the run ends in its handler's HLT, never in a failed
// VM entry. The property test at the end writes random values with MOV CRn, WRMSR, XSETBV, LGDT and
// LIDT in random modes and checks that no run ends in a VM-entry failure or an internal error.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { EntryMode } from "../../lib/boot/entry.js";
import type { Machine } from "../../lib/vmm/machine.js";
import { FAULTS_EVERYWHERE, type FaultRun, runFaultGuest } from "../support/fault-guest.js";

const GP = 13;
const UD = 6;
const hex = (s: string): number[] =>
  s
    .trim()
    .split(/\s+/)
    .map((x) => Number.parseInt(x, 16));

async function faultOf(mode: EntryMode, code: string, setup?: Parameters<typeof runFaultGuest>[2]) {
  const r = await runFaultGuest(mode, hex(code), setup);
  // the one thing every case here asserts: the guest's handler ran and halted, the VM is intact
  expect(r.result.reason, r.result.message).toBe("hlt");
  return r;
}

describe("soft backend: the guests the KVM suite runs too (test/kvm/arch-faults.test.ts)", () => {
  it.each(FAULTS_EVERYWHERE.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const r = await faultOf(c.mode, c.code);
    expect(r.vectors).toEqual(c.vectors);
    if (c.frameRip !== undefined) expect(r.frameRip).toBe(c.frameRip);
  });
});

describe("soft backend: invalid control-register values fault in the guest", () => {
  it.each([
    ["CR4 = 0xFFFFFFFF (exits: VMXE is the host's)", "long", "b8 ff ff ff ff 0f 22 e0 f4"],
    ["CR4.OSXSAVE (XSAVE not offered)", "long", "0f 20 e0 0d 00 00 04 00 0f 22 e0 f4"],
    // mov rax, cr3; or eax, 8; mov cr3, rax; mov rax, cr4; or eax, 1 << 17; mov cr4, rax
    [
      "setting CR4.PCIDE with CR3[11:0] != 0",
      "long",
      "0f 20 d8 83 c8 08 0f 22 d8 0f 20 e0 0d 00 00 02 00 0f 22 e0 f4",
    ],
    ["setting CR4.PCIDE outside IA-32e mode", "protected", "0f 20 e0 0d 00 00 02 00 0f 22 e0 f4"],
    ["CR0.NW without CR0.CD", "protected", "0f 20 c0 0f ba e8 1d 0f ba f0 1e 0f 22 c0 f4"],
    // mov rax, cr0; btr eax, 31; btc eax, 5; mov cr0, rax: NE changes, so the hypervisor decides
    [
      "clearing CR0.PG in 64-bit mode, with NE toggled (exits)",
      "long",
      "0f 20 c0 0f ba f0 1f 0f ba f8 05 0f 22 c0 f4",
    ],
    [
      "CR0.PG with CR0.PE clear, NE toggled (exits)",
      "protected",
      "0f 20 c0 83 e0 fe 0d 00 00 00 80 83 f0 20 0f 22 c0 f4",
    ],
    ["CR3 bit 39 (above MAXPHYADDR)", "long", "0f 20 d8 48 0f ba e8 27 0f 22 d8 f4"],
  ] as const)("%s is #GP(0)", async (_name, mode, code) => {
    const r = await faultOf(mode, code);
    expect(r.vectors).toEqual([GP]);
    expect(r.errorCode).toBe(0n);
  });
});

describe("soft backend: PCIDs and INVPCID (CPUID.1:ECX[17], CPUID.7.0:EBX[10])", () => {
  it("CR4.PCIDE is set in 64-bit mode; CR3 keeps the PCID, not the no-flush bit; INVPCID runs", async () => {
    // mov rax, cr4; or eax, 1 << 17; mov cr4, rax; mov rax, cr3; or rax, 5; bts rax, 63;
    // mov cr3, rax; mov rbx, cr3; push 0; push 5 (descriptor: PCID 5, address 0);
    // xor ecx, ecx; then INVPCID rcx, [rsp] with types 0, 1, 2 and 3 (inc ecx between), and
    // with type 4: #GP(0); hlt
    const r = await faultOf(
      "long",
      "0f 20 e0 0d 00 00 02 00 0f 22 e0 0f 20 d8 48 83 c8 05 48 0f ba e8 3f 0f 22 d8 0f 20 db 6a 00 6a 05 " +
        "31 c9 66 0f 38 82 0c 24 ff c1 66 0f 38 82 0c 24 ff c1 66 0f 38 82 0c 24 ff c1 66 0f 38 82 0c 24 " +
        "b9 04 00 00 00 66 0f 38 82 0c 24 f4",
    );
    expect(r.vectors).toEqual([GP]);
    expect(r.errorCode).toBe(0n);
    expect(r.frameRip).toBe(0x10046n);
    expect(r.sregs.cr4 & 0x20000n).toBe(0x20000n);
    expect(r.sregs.cr3 & 0xfffn).toBe(5n);
    expect(r.sregs.cr3 >> 63n).toBe(0n);
  });
});

describe("soft backend: WRMSR of reserved bits or unsupported values", () => {
  it("the issue's example: IA32_PAT with a reserved memory type in protected mode is #GP(0)", async () => {
    const r = await faultOf("protected", "b9 77 02 00 00 b8 02 00 00 00 ba 00 00 00 00 0f 30 f4");
    expect(r.vectors).toEqual([GP]);
    expect(r.frameRip).toBe(0x1000fn);
  });

  it.each([
    ["EFER bit 1 (reserved)", "b9 80 00 00 c0 0f 32 83 c8 02 0f 30 f4"],
    ["EFER.LME cleared while paging is on", "b9 80 00 00 c0 0f 32 0f ba f0 08 0f 30 f4"],
    ["IA32_FEATURE_CONTROL (reads as locked)", "b9 3a 00 00 00 31 c0 31 d2 0f 30 f4"],
    ["an MSR that does not exist", "b9 45 23 01 00 31 c0 31 d2 0f 30 f4"],
    ["FS_BASE non-canonical", "b9 00 01 00 c0 31 c0 ba 00 80 00 00 0f 30 f4"],
    ["MTRR_PHYSBASE0 with type 2", "b9 00 02 00 00 b8 02 00 00 00 31 d2 0f 30 f4"],
  ])("%s is #GP(0)", async (_name, code) => {
    expect((await faultOf("long", code)).vectors).toEqual([GP]);
  });

  it("EFER.NXE and a valid PAT are written (and read back in the VMCS)", async () => {
    // wrmsr EFER |= NXE; wrmsr PAT = 0x0007040600070406 | WC in byte 1; hlt
    const r = await faultOf(
      "long",
      "b9 80 00 00 c0 0f 32 0f ba e8 0b 0f 30 b9 77 02 00 00 b8 06 01 07 00 ba 06 04 07 00 0f 30 f4",
    );
    expect(r.vectors).toEqual([]);
    expect(r.sregs.efer & 0x800n).toBe(0x800n);
  });
});

describe("soft backend: XSAVE and descriptor tables", () => {
  it("XGETBV and XSETBV with CR4.OSXSAVE = 0 are #UD", async () => {
    expect((await faultOf("long", "31 c9 0f 01 d0 f4")).vectors).toEqual([UD]);
    expect((await faultOf("protected", "31 c9 b8 03 00 00 00 31 d2 0f 01 d1 f4")).vectors).toEqual([UD]);
  });

  it("LGDT of a non-canonical base is #GP(0)", async () => {
    const r = await faultOf(
      "long",
      "48 b8 00 00 00 00 00 80 00 00 48 89 04 25 02 70 00 00 66 c7 04 25 00 70 00 00 ff 0f 0f 01 14 25 00 70 00 00 f4",
    );
    expect(r.vectors).toEqual([GP]);
    expect(r.sregs.gdt.base).not.toBe(0x800000000000n);
  });
});

describe("soft backend: non-canonical RIP", () => {
  it("JMP to 0x800000000000 faults at the JMP", async () => {
    const r = await faultOf("long", "48 b8 00 00 00 00 00 80 00 00 ff e0");
    expect(r.vectors).toEqual([GP]);
    expect(r.frameRip).toBe(0x1000an);
  });

  /** maps 0x7FFFFFFFF000 (the last page of the lower canonical half) to 0x303000 through the loader's PML4 */
  const topPage = (code: string, at: number) => ({
    setup: (vm: Machine) => {
      const pml4 = Number(vm.vcpu(0).getSregs().cr3);
      vm.memory.writeU64(pml4 + 255 * 8, 0x300003n);
      vm.memory.writeU64(0x300000 + 511 * 8, 0x301003n);
      vm.memory.writeU64(0x301000 + 511 * 8, 0x302003n);
      vm.memory.writeU64(0x302000 + 511 * 8, 0x303003n);
      vm.memory.write(0x303000 + at, Uint8Array.from(hex(code)));
    },
  });
  // mov rax, 0x7ffffffffXXX; jmp rax
  const jumpTo = (off: number) =>
    `48 b8 ${(off & 0xff).toString(16)} ${(0xf0 | (off >> 8)).toString(16)} ff ff ff 7f 00 00 ff e0`;

  it.each([
    ["VMCALL", "0f 01 c1", 0xffd],
    ["CPUID", "0f a2", 0xffe],
  ])(
    "%s ending at 0x800000000000 (the hypervisor completes it) is #GP(0), not a failed VM entry",
    async (_n, code, at) => {
      const r = await faultOf("long", jumpTo(at), topPage(code, at));
      expect(r.vectors).toEqual([GP]);
      // the VMCS cannot hold RIP 0x800000000000: the fault is reported at the instruction
      expect(r.frameRip).toBe(0x7ffffffff000n + BigInt(at));
    },
  );

  it("NOPs ending at 0x800000000000 (the interpreter runs them): #GP(0) at the next fetch", async () => {
    const r = await faultOf("long", jumpTo(0xffe), topPage("90 90", 0xffe));
    expect(r.vectors).toEqual([GP]);
    expect(r.frameRip).toBe(0x800000000000n);
  });
});

describe("soft backend: real mode segment limit", () => {
  it("a word at DS:0xFFFF is #GP", async () => {
    expect((await faultOf("real", "a1 ff ff f4")).vectors).toEqual([GP]);
  });
});

// ------------------------------------------------------------------ property: no guest-made entry failure

const le = (v: bigint, bytes: number): number[] =>
  Array.from({ length: bytes }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));

type Op =
  | { kind: "cr"; cr: 0 | 3 | 4 | 8; value: bigint }
  | { kind: "wrmsr"; index: number; value: bigint }
  | { kind: "xsetbv"; ecx: number; value: bigint }
  | { kind: "table"; idt: boolean; base: bigint; limit: number };

/** the MSRs the soft CPU has (and a few it has not), whose writes the property throws values at */
const MSRS = [
  0x10, 0x1b, 0x3a, 0x79, 0x8b, 0x174, 0x175, 0x176, 0x179, 0x17a, 0x17b, 0x1a0, 0x1d9, 0x200, 0x201, 0x20f,
  0x210, 0x250, 0x258, 0x26f, 0x277, 0x2ff, 0x480, 0xc0000080, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,
  0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103, 0x12345,
];
/** zero-filled RAM: page tables and descriptor tables there hold nothing present */
const ZERO = 0x200000n;

const bit = fc.integer({ min: 0, max: 63 }).map((b) => 1n << BigInt(b));
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** near the values guests use, with a random bit or two flipped, or anything */
const around = (base: bigint) =>
  fc.oneof(
    fc.tuple(bit, bit).map(([a, b]) => base ^ a ^ b),
    bit.map((a) => base ^ a),
    u64,
  );

const opArb: fc.Arbitrary<Op> = fc.oneof(
  around(0x80000011n).map((value) => ({ kind: "cr", cr: 0, value }) as Op),
  // CR3: zero-filled tables (nothing present: #PF, then shutdown) with ignored bits 11:0 or a
  // reserved bit at or above MAXPHYADDR (a CR3 that points outside RAM would make the page walk an
  // access to nothing, which is not this property's subject)
  fc
    .tuple(
      fc.integer({ min: 0, max: 0x1ff }),
      fc.oneof(
        fc.constant(0n),
        fc.integer({ min: 0, max: 0xfff }).map(BigInt),
        fc.integer({ min: 39, max: 63 }).map((b) => 1n << BigInt(b)),
      ),
    )
    .map(([page, extra]) => ({ kind: "cr", cr: 3, value: (ZERO + BigInt(page) * 4096n) | extra }) as Op),
  around(0x20n).map((value) => ({ kind: "cr", cr: 4, value }) as Op),
  around(0n).map((value) => ({ kind: "cr", cr: 8, value }) as Op),
  fc
    .tuple(
      fc.constantFrom(...MSRS),
      fc.oneof(around(0n), around(0xd01n), around(0x0007040600070406n), around(0xfee00900n)),
    )
    .map(([index, value]) => ({ kind: "wrmsr", index, value }) as Op),
  fc
    .tuple(fc.constantFrom(0, 0, 1), around(3n))
    .map(([ecx, value]) => ({ kind: "xsetbv", ecx, value }) as Op),
  // bases in zero-filled RAM or anywhere (non-canonical ones must fault), any limit
  fc
    .tuple(fc.boolean(), fc.oneof(around(ZERO), u64), fc.integer({ min: 0, max: 0xffff }))
    .map(([idt, base, limit]) => ({ kind: "table", idt, base, limit }) as Op),
);

/** machine code for one op in `mode` (scratch memory for LGDT/LIDT at DS:0x7000) */
function encode(mode: EntryMode, op: Op): number[] {
  const o32 = mode === "real" ? [0x66] : [];
  const movEax = (v: bigint) => [...o32, 0xb8, ...le(v & 0xffffffffn, 4)];
  const movEcx = (v: number) => [...o32, 0xb9, ...le(BigInt(v >>> 0), 4)];
  const movEdx = (v: bigint) => [...o32, 0xba, ...le((v >> 32n) & 0xffffffffn, 4)];
  switch (op.kind) {
    case "cr": {
      const load = mode === "long" ? [0x48, 0xb8, ...le(op.value, 8)] : movEax(op.value);
      const modrm = 0xc0 | ((op.cr & 7) << 3);
      return [...load, ...(op.cr === 8 ? [0x44] : []), 0x0f, 0x22, modrm];
    }
    case "wrmsr":
      return [...movEcx(op.index), ...movEax(op.value), ...movEdx(op.value), 0x0f, 0x30];
    case "xsetbv":
      return [...movEcx(op.ecx), ...movEax(op.value), ...movEdx(op.value), 0x0f, 0x01, 0xd1];
    case "table": {
      const reg = op.idt ? 3 : 2;
      if (mode === "long") {
        return [
          ...[0x48, 0xb8, ...le(op.base, 8)],
          ...[0x48, 0x89, 0x04, 0x25, 0x02, 0x70, 0x00, 0x00],
          ...[0x66, 0xc7, 0x04, 0x25, 0x00, 0x70, 0x00, 0x00, ...le(BigInt(op.limit), 2)],
          ...[0x0f, 0x01, 0x04 | (reg << 3), 0x25, 0x00, 0x70, 0x00, 0x00],
        ];
      }
      if (mode === "protected") {
        return [
          ...[0xc7, 0x05, 0x02, 0x70, 0x00, 0x00, ...le(op.base & 0xffffffffn, 4)],
          ...[0x66, 0xc7, 0x05, 0x00, 0x70, 0x00, 0x00, ...le(BigInt(op.limit), 2)],
          ...[0x0f, 0x01, 0x05 | (reg << 3), 0x00, 0x70, 0x00, 0x00],
        ];
      }
      return [
        ...[0x66, 0xc7, 0x06, 0x02, 0x70, ...le(op.base & 0xffffffffn, 4)],
        ...[0xc7, 0x06, 0x00, 0x70, ...le(BigInt(op.limit), 2)],
        ...[0x0f, 0x01, 0x06 | (reg << 3), 0x00, 0x70],
      ];
    }
  }
}

describe("soft backend: random control-register, MSR, XCR0 and descriptor-table writes", () => {
  it.each(["real", "protected", "long"] as const)(
    "in %s mode never end the run in a VM-entry failure or an internal error",
    async (mode) => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 6 }), async (ops) => {
          const code = [...ops.flatMap((op) => encode(mode, op)), 0xf4];
          const r: FaultRun = await runFaultGuest(mode, code, { maxExits: 5000, maxInstructions: 200_000 });
          expect(["fail-entry", "internal-error", "error"], r.result.message).not.toContain(r.result.reason);
        }),
        { numRuns: Number(process.env.FC_RUNS ?? 40), seed: Number(process.env.FC_SEED ?? 13) },
      );
    },
  );
});
