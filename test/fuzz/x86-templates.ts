// Instruction templates for the guest-code fuzzer: the instructions that reach the VMM's host side
// (port I/O, MMIO, control and debug registers, MSRs, descriptor tables, segment loads, VMX, CPUID,
// string I/O, mode bits), with operands drawn from values that matter (device ports and registers,
// MSRs we emulate, control-register bits) and from anything at all. Bytes are written by hand rather
// than by an assembler because every template must encode in 16-, 32- and 64-bit code alike: the
// helpers add the operand- and address-size prefixes 16-bit code needs.

import fc from "fast-check";

export type Bits = 16 | 32 | 64;

/** Guest-physical addresses the fuzz machine has something at (see guest-code.ts). */
export interface GuestMap {
  /** random bytes the case puts in memory (descriptor tables, VMCS regions, string sources) */
  data: number;
  dataSize: number;
  /** virtio-mmio windows */
  virtio: readonly number[];
}

const LAPIC = 0xfee00000;
const IOAPIC = 0xfec00000;

/** Ports of the devices the fuzz machine has (addPcDevices + the platform's PIC pair). */
const PORTS = [
  0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x60, 0x64, 0x70, 0x71, 0x80, 0x92, 0xe9, 0xf4, 0x3f8,
  0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, 0x510, 0x511, 0x514, 0x518, 0xcf9, 0xb000, 0xb002, 0xb004,
  0xb008, 0x4d0, 0x4d1, 0xcf8, 0xcfc,
];

const MSRS = [
  0x10, 0x1b, 0x3a, 0x48, 0x49, 0x8b, 0xe7, 0xe8, 0x174, 0x175, 0x176, 0x1a0, 0x1d9, 0x277, 0x2ff, 0x480,
  0x481, 0x482, 0x48d, 0x6e0, 0x802, 0x808, 0x80b, 0x830, 0x838, 0xc0000080, 0xc0000081, 0xc0000082,
  0xc0000083, 0xc0000084, 0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103, 0x40000000,
];

/** CR0: PE MP EM TS ET NE WP AM NW CD PG; CR4: VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR ... */
const CR0_BITS = [0, 1, 2, 3, 4, 5, 16, 18, 29, 30, 31];
const CR4_BITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 20, 21, 22, 23];

/** VMCS field encodings (SDM Appendix B): a few of each width and kind. */
const VMCS_FIELDS = [
  0x0000, 0x0800, 0x0802, 0x0c00, 0x2000, 0x2800, 0x2802, 0x201a, 0x4000, 0x4002, 0x4012, 0x4016, 0x401e,
  0x4400, 0x4800, 0x4814, 0x4820, 0x6800, 0x6802, 0x6804, 0x681c, 0x681e, 0x6820, 0x6c00, 0x6c16,
];

const le = (value: number | bigint, size: number): number[] => {
  let v = BigInt.asUintN(size * 8, BigInt(value));
  const out: number[] = [];
  for (let i = 0; i < size; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
};

/** operand-size prefix that makes the operand 32 bits in 16-bit code */
const o32 = (bits: Bits): number[] => (bits === 16 ? [0x66] : []);
/** address-size prefix that makes [ebx] a 32-bit address in 16-bit code */
const a32 = (bits: Bits): number[] => (bits === 16 ? [0x67] : []);
/** operand-size prefix that makes the operand 16 bits in 32/64-bit code */
const o16 = (bits: Bits): number[] => (bits === 16 ? [] : [0x66]);

/** mov r32, imm32 (zero-extends to 64 bits in long mode) */
export const movImm = (bits: Bits, reg: number, value: number): number[] => [
  ...o32(bits),
  0xb8 + reg,
  ...le(value, 4),
];

const EAX = 0;
const ECX = 1;
const EDX = 2;
const EBX = 3;
const ESI = 6;
const EDI = 7;

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const anyPort = fc.oneof(fc.constantFrom(...PORTS), fc.integer({ min: 0, max: 0xffff }));
const smallCount = fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 0x2000 }));

/** values worth putting in a register: device-ish numbers and anything */
const value = fc.oneof(
  u32,
  fc.constantFrom(0, 1, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff),
  fc.integer({ min: 0, max: 0xff }),
);

/** an address worth storing to or loading from */
function address(map: GuestMap): fc.Arbitrary<number> {
  return fc.oneof(
    fc.integer({ min: map.data, max: map.data + map.dataSize - 1 }),
    fc.integer({ min: 0, max: 0x3ff }).map((i) => LAPIC + i * 4),
    fc.constantFrom(IOAPIC, IOAPIC + 0x10, IOAPIC + 0x20, IOAPIC + 0x40),
    fc.tuple(fc.constantFrom(...map.virtio), fc.integer({ min: 0, max: 0x3f })).map(([b, r]) => b + r * 4),
    fc.integer({ min: 0, max: 0x1ff }).map((i) => map.data + map.dataSize + i * 0x1000),
    u32,
  );
}

/** a memory access of `size` bytes through [ebx]: mov [ebx], al/ax/eax/rax or the load */
function access(bits: Bits, size: 1 | 2 | 4 | 8, store: boolean): number[] {
  const op = store ? (size === 1 ? 0x88 : 0x89) : size === 1 ? 0x8a : 0x8b;
  if (size === 8) return bits === 64 ? [0x48, op, 0x03] : [...a32(bits), ...o32(bits), op, 0x03];
  const prefix = size === 2 ? o16(bits) : size === 4 ? o32(bits) : [];
  return [...a32(bits), ...prefix, op, 0x03];
}

type Template = (bits: Bits, map: GuestMap) => fc.Arbitrary<number[]>;

const portOut: Template = (bits) =>
  fc
    .tuple(anyPort, value, fc.constantFrom(1, 2, 4))
    .map(([port, v, size]) => [
      ...movImm(bits, EDX, port),
      ...movImm(bits, EAX, v),
      ...(size === 1 ? [0xee] : size === 2 ? [...o16(bits), 0xef] : [...o32(bits), 0xef]),
    ]);

const portIn: Template = (bits) =>
  fc
    .tuple(anyPort, fc.constantFrom(1, 2, 4))
    .map(([port, size]) => [
      ...movImm(bits, EDX, port),
      ...(size === 1 ? [0xec] : size === 2 ? [...o16(bits), 0xed] : [...o32(bits), 0xed]),
    ]);

const portImm: Template = () =>
  fc
    .tuple(
      fc.constantFrom(0xe4, 0xe5, 0xe6, 0xe7),
      fc.oneof(fc.constantFrom(...PORTS.filter((p) => p < 256)), fc.nat(255)),
    )
    .map(([op, port]) => [op, port]);

/** rep ins/outs over the data area, either direction */
const portString: Template = (bits, map) =>
  fc
    .tuple(
      anyPort,
      smallCount,
      fc.constantFrom(0x6c, 0x6d, 0x6e, 0x6f),
      fc.boolean(),
      fc.nat(map.dataSize - 1),
    )
    .map(([port, count, op, down, at]) => [
      ...movImm(bits, EDX, port),
      ...movImm(bits, ECX, count),
      ...movImm(bits, ESI, map.data + at),
      ...movImm(bits, EDI, map.data + at),
      down ? 0xfd : 0xfc,
      ...a32(bits),
      0xf3,
      op,
      0xfc,
    ]);

const memoryAccess: Template = (bits, map) =>
  fc
    .tuple(address(map), value, fc.constantFrom<1 | 2 | 4 | 8>(1, 2, 4, 8), fc.boolean())
    .map(([at, v, size, store]) => [
      ...movImm(bits, EBX, at),
      ...movImm(bits, EAX, v),
      ...access(bits, size, store),
    ]);

/** rep movs/stos/cmps/scas/lods with counts that cross pages and devices */
const memoryString: Template = (bits, map) =>
  fc
    .tuple(
      address(map),
      address(map),
      smallCount,
      fc.constantFrom(0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf),
      fc.constantFrom(0xf3, 0xf2),
      fc.boolean(),
      fc.boolean(),
    )
    .map(([src, dst, count, op, rep, down, wide]) => [
      ...movImm(bits, ESI, src),
      ...movImm(bits, EDI, dst),
      ...movImm(bits, ECX, count),
      down ? 0xfd : 0xfc,
      ...a32(bits),
      ...(wide && bits === 64 ? [rep, 0x48, op] : [rep, op]),
      0xfc,
    ]);

/** mov crN, eax with the current value's mode bits flipped, or anything */
const controlRegister: Template = (bits) =>
  fc
    .tuple(
      fc.constantFrom(0, 2, 3, 4, 8, 1, 5),
      fc.oneof(
        fc.subarray(CR0_BITS).map((b) => b.reduce((v, i) => (v | (1 << i)) >>> 0, 0)),
        fc.subarray(CR4_BITS).map((b) => b.reduce((v, i) => (v | (1 << i)) >>> 0, 0)),
        u32,
      ),
      fc.constantFrom("write", "or", "xor", "read"),
    )
    .map(([cr, v, how]) => {
      // CR8 needs REX.R in 64-bit code; elsewhere LOCK is AMD's alternative encoding (#UD on Intel)
      const high = cr >= 8 ? (bits === 64 ? [0x44] : [0xf0]) : [];
      const modrmEax = 0xc0 | ((cr & 7) << 3);
      const read = [...high, 0x0f, 0x20, modrmEax];
      const write = [...high, 0x0f, 0x22, modrmEax];
      if (how === "read") return read;
      if (how === "write") return [...movImm(bits, EAX, v), ...write];
      // or/xor eax, imm32 on the current value: flips a few bits of a sane value
      return [...read, ...o32(bits), how === "or" ? 0x0d : 0x35, ...le(v, 4), ...write];
    });

const debugRegister: Template = (bits) =>
  fc
    .tuple(fc.integer({ min: 0, max: 7 }), value, fc.boolean())
    .map(([dr, v, write]) =>
      write ? [...movImm(bits, EAX, v), 0x0f, 0x23, 0xc0 | (dr << 3)] : [0x0f, 0x21, 0xc0 | (dr << 3)],
    );

const msr: Template = (bits) =>
  fc
    .tuple(fc.oneof(fc.constantFrom(...MSRS), u32), value, value, fc.boolean())
    .map(([index, lo, hi, write]) => [
      ...movImm(bits, ECX, index),
      ...movImm(bits, EAX, lo),
      ...movImm(bits, EDX, hi),
      0x0f,
      write ? 0x30 : 0x32,
    ]);

/** lgdt/lidt/lldt/ltr/sgdt/sidt on the data area's random bytes, then a segment load */
const descriptorTables: Template = (bits, map) =>
  fc
    .tuple(
      fc.nat(map.dataSize - 16),
      fc.constantFrom(0x13, 0x1b, 0x03, 0x0b),
      fc.integer({ min: 0, max: 0xffff }),
      fc.constantFrom(0xd8, 0xc0, 0xe0, 0xe8, 0xd0, 0x00, 0x01),
    )
    .map(([at, modrm, selector, seg]) => {
      const table = [...movImm(bits, EBX, map.data + at), ...a32(bits), ...o32(bits), 0x0f, 0x01, modrm];
      const load =
        seg === 0x00
          ? [0x0f, 0x00, 0xd8] // ltr ax
          : seg === 0x01
            ? [0x0f, 0x00, 0xd0] // lldt ax
            : [0x8e, seg]; // mov ds/es/fs/gs/ss, ax
      return [...table, ...movImm(bits, EAX, selector), ...load];
    });

/** far transfers through the stack: push selector, push offset, retf / iret with random flags */
const farTransfer: Template = (bits) =>
  fc
    .tuple(fc.integer({ min: 0, max: 0xffff }), u32, value, fc.constantFrom("retf", "iret", "iret-vm86"))
    .map(([selector, offset, flags, how]) => {
      const push = (reg: number) => (bits === 16 ? [0x66, 0x50 + reg] : [0x50 + reg]);
      const wide = bits === 64 ? [0x48] : o32(bits);
      const out: number[] = [];
      if (how !== "retf") {
        if (bits === 64 || how === "iret-vm86") {
          // ss:esp (64-bit iret and a return to virtual-8086 mode pop them too), then the segments
          out.push(...movImm(bits, EAX, 0x10), ...push(EAX), ...movImm(bits, EAX, 0x7000), ...push(EAX));
        }
        const f = how === "iret-vm86" ? (flags | 0x20000) >>> 0 : flags;
        out.push(...movImm(bits, EAX, f), ...push(EAX));
      }
      out.push(...movImm(bits, EAX, selector), ...push(EAX), ...movImm(bits, EAX, offset), ...push(EAX));
      out.push(...wide, how === "retf" ? 0xcb : 0xcf);
      return out;
    });

const interrupts: Template = () =>
  fc.oneof(
    fc.nat(255).map((n) => [0xcd, n]),
    fc.constantFrom<number[]>([0xcc], [0xce], [0xf1], [0x0f, 0x0b], [0xfb], [0xfa], [0xfb, 0xf4], [0xf4]),
  );

const cpuid: Template = (bits) =>
  fc
    .tuple(
      fc.oneof(
        fc.constantFrom(
          0,
          1,
          4,
          6,
          7,
          0xa,
          0xb,
          0xd,
          0x14,
          0x15,
          0x16,
          0x40000000,
          0x80000000,
          0x80000001,
          0x80000008,
        ),
        u32,
      ),
      fc.integer({ min: 0, max: 3 }),
    )
    .map(([leaf, sub]) => [...movImm(bits, EAX, leaf), ...movImm(bits, ECX, sub), 0x0f, 0xa2]);

/** system instructions whose exits or emulation live in the VMM */
const system: Template = (bits) =>
  fc.constantFrom(
    [0x0f, 0x31], // rdtsc
    [0x0f, 0x01, 0xf9], // rdtscp
    [0x0f, 0xc7, 0xf0], // rdrand eax
    [0x0f, 0xc7, 0xf8], // rdseed eax
    [0x0f, 0x33], // rdpmc
    [0x0f, 0x01, 0xd0], // xgetbv
    [...movImm(bits, ECX, 0), ...movImm(bits, EAX, 7), ...movImm(bits, EDX, 0), 0x0f, 0x01, 0xd1], // xsetbv
    [0x0f, 0x09], // wbinvd
    [0x0f, 0x08], // invd
    [0x0f, 0x06], // clts
    [0x0f, 0x01, 0xf0], // lmsw ax
    [0x0f, 0x01, 0xe0], // smsw ax
    [0x0f, 0x01, 0xc8], // monitor
    [0x0f, 0x01, 0xc9], // mwait
    [0x0f, 0x01, 0xf8], // swapgs
    [0x0f, 0x05], // syscall
    [0x0f, 0x07], // sysret
    [0x0f, 0x34], // sysenter
    [0x0f, 0x35], // sysexit
    [0x0f, 0xaa], // rsm
    [0x0f, 0x01, 0xca], // clac
    [0x0f, 0x01, 0xcb], // stac
    [0x0f, 0x01, 0xd4], // vmfunc
    [0x0f, 0x01, 0xd8], // vmrun (AMD)
    [0xf3, 0x90], // pause
    [0x9c, 0x58], // pushf; pop ax
    [0x0f, 0x00, 0xc8], // str ax
    [0x0f, 0x00, 0xe0], // verr ax
    [0x0f, 0x02, 0xc0], // lar eax, eax
    [0x0f, 0x03, 0xc0], // lsl eax, eax
  );

/** popf with flags that change how the CPU runs (TF, IF, DF, AC, NT, IOPL, RF, VIF, ID) */
const flags: Template = (bits) =>
  fc.tuple(value, fc.subarray([8, 9, 10, 12, 13, 14, 16, 17, 18, 19, 20, 21])).map(([v, set]) => {
    const f = set.reduce((x, b) => (x | (1 << b)) >>> 0, v & 0xff);
    return [...movImm(bits, EAX, f), ...(bits === 16 ? [0x66, 0x50, 0x66, 0x9d] : [0x50, 0x9d])];
  });

/**
 * VMX in the guest: VMXON/VMCLEAR/VMPTRLD on the data area (its first dword set to a revision id
 * sometimes), CR4.VMXE on, VMWRITE of fields, VMLAUNCH/VMRESUME/VMREAD/VMXOFF/VMCALL/INVEPT.
 */
const vmx: Template = (bits, map) =>
  fc
    .tuple(
      fc.nat(map.dataSize / 0x1000 - 1).map((p) => map.data + p * 0x1000),
      fc.constantFrom(VMCS_FIELDS[0]!, ...VMCS_FIELDS),
      value,
      fc.constantFrom(
        "on",
        "clear",
        "ptrld",
        "ptrst",
        "write",
        "read",
        "launch",
        "resume",
        "off",
        "call",
        "invept",
      ),
    )
    .map(([region, field, v, op]) => {
      const mem = [...movImm(bits, EBX, region), ...a32(bits)];
      switch (op) {
        case "on":
          return [
            ...[0x0f, 0x20, 0xe0], // mov eax, cr4
            ...o32(bits),
            0x0d,
            ...le(1 << 13, 4), // or eax, CR4.VMXE
            ...[0x0f, 0x22, 0xe0],
            ...mem,
            0xf3,
            0x0f,
            0xc7,
            0x33,
          ];
        case "clear":
          return [...mem, 0x66, 0x0f, 0xc7, 0x33];
        case "ptrld":
          return [...mem, 0x0f, 0xc7, 0x33];
        case "ptrst":
          return [...mem, 0x0f, 0xc7, 0x3b];
        case "write":
          // vmwrite eax(field) <- ecx(value): 0F 79 /r with reg = field, r/m = value
          return [...movImm(bits, EAX, field), ...movImm(bits, ECX, v), 0x0f, 0x79, 0xc1];
        case "read":
          return [...movImm(bits, EAX, field), 0x0f, 0x78, 0xc1];
        case "launch":
          return [0x0f, 0x01, 0xc2];
        case "resume":
          return [0x0f, 0x01, 0xc3];
        case "off":
          return [0x0f, 0x01, 0xc4];
        case "call":
          return [...movImm(bits, EAX, v), 0x0f, 0x01, 0xc1];
        default:
          return [...mem, ...movImm(bits, ECX, v & 3), 0x66, 0x0f, 0x38, 0x80, 0x0b];
      }
    });

/** invlpg / xsave / xrstor / fxsave / fxrstor / clflush on an address (often the data area) */
const memorySystem: Template = (bits, map) =>
  fc
    .tuple(
      address(map),
      fc.constantFrom(
        [0x0f, 0x01, 0x3b],
        [0x0f, 0xae, 0x23],
        [0x0f, 0xae, 0x2b],
        [0x0f, 0xae, 0x03],
        [0x0f, 0xae, 0x0b],
        [0x0f, 0xae, 0x3b],
      ),
    )
    .map(([at, op]) => [
      ...movImm(bits, EBX, at),
      ...movImm(bits, EAX, 0xffffffff),
      ...movImm(bits, EDX, 0xffffffff),
      ...a32(bits),
      ...op,
    ]);

/**
 * A virtio-mmio driver's bring-up on one window, with the queue rings in the data area (random
 * bytes: descriptors that point anywhere), ending in a queue notify.
 */
const virtio: Template = (bits, map) =>
  fc
    .tuple(
      fc.constantFrom(...map.virtio),
      fc.integer({ min: 0, max: 2 }),
      fc.constantFrom(1, 2, 4, 8, 16, 256, 0, 3, 0xffff),
      fc.nat(map.dataSize / 0x1000 - 1),
      fc.constantFrom(0xf, 0xb, 0x7f, 0x80),
    )
    .map(([base, queue, size, page, status]) => {
      const w = (off: number, v: number) => [
        ...movImm(bits, EBX, base + off),
        ...movImm(bits, EAX, v),
        ...access(bits, 4, true),
      ];
      const ring = map.data + page * 0x1000;
      return [
        ...w(0x70, 0),
        ...w(0x70, 3),
        ...w(0x24, 1),
        ...w(0x20, 1), // driver features word 1: VIRTIO_F_VERSION_1
        ...w(0x70, 0xb),
        ...w(0x30, queue),
        ...w(0x38, size),
        ...w(0x80, ring),
        ...w(0x90, ring + 0x400),
        ...w(0xa0, ring + 0x800),
        ...w(0x44, 1),
        ...w(0x70, status),
        ...w(0x50, queue),
      ];
    });

const TEMPLATES: readonly Template[] = [
  portOut,
  portIn,
  portImm,
  portString,
  memoryAccess,
  memoryString,
  controlRegister,
  debugRegister,
  msr,
  descriptorTables,
  farTransfer,
  interrupts,
  cpuid,
  system,
  flags,
  vmx,
  memorySystem,
  virtio,
];

/** One of the templates above, encoded for `bits`-bit code. */
export function templateChunk(bits: Bits, map: GuestMap): fc.Arbitrary<number[]> {
  return fc.oneof(...TEMPLATES.map((t) => t(bits, map)));
}
