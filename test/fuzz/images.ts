// Fuzz target "image": mutated ELF32/ELF64, multiboot (ELF and a.out-kludge) and bzImage images
// through `vm.load(image, options)` (lib/boot's detection and loaders). Seeds are the committed
// example images and images built here; mutations are structure-aware (header and program-header
// fields, multiboot header fields with the checksum fixed up or not, setup-header fields) mixed with
// byte flips, truncation and growth. Options vary the RAM size, the format asked for, the command
// line, multiboot modules and an initrd.
//
// Oracle: a successful load or a typed loader error (GuestImageError; BootSetupError when the
// loader's own structures cannot be placed), never another exception; a loaded image then runs a
// few thousand instructions and must end as the guest target's runs must (guest-code.ts).

import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import type { LoadImageOptions } from "../../lib/boot/index.js";
import { SETUP_HEADER } from "../../lib/boot/index.js";
import { BootSetupError, createMachine, GuestImageError, type RunResult } from "../../lib/index.js";
import { bzImage } from "../support/bzimage.js";
import {
  type CaseOutcome,
  definedStop,
  errorLine,
  type FuzzTarget,
  fromHex,
  hex,
  OracleViolation,
} from "./target.js";

const ROOT = join(import.meta.dirname, "..", "..");

interface Field {
  offset: number;
  size: 1 | 2 | 4 | 8;
}

interface Seed {
  name: string;
  bytes: Uint8Array;
  fields: Field[];
  /** file offset of a multiboot header whose checksum a mutation may fix up */
  multiboot?: number;
}

const u32At = (b: Uint8Array, o: number) =>
  o + 4 <= b.length ? new DataView(b.buffer, b.byteOffset).getUint32(o, true) : 0;

/** ELF header and program-header fields of a well-formed ELF. */
function elfFields(b: Uint8Array): Field[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const is64 = b[4] === 2;
  const fields: Field[] = [4, 5, 6, 7].map((offset) => ({ offset, size: 1 }));
  fields.push({ offset: 0x10, size: 2 }, { offset: 0x12, size: 2 });
  if (is64) {
    fields.push(
      { offset: 0x18, size: 8 },
      { offset: 0x20, size: 8 },
      { offset: 0x36, size: 2 },
      { offset: 0x38, size: 2 },
    );
    const phoff = Number(dv.getBigUint64(0x20, true));
    const n = dv.getUint16(0x38, true);
    for (let i = 0; i < n; i++) {
      const p = phoff + i * 56;
      fields.push({ offset: p, size: 4 });
      for (const f of [8, 0x10, 0x18, 0x20, 0x28, 0x30]) fields.push({ offset: p + f, size: 8 });
    }
  } else {
    fields.push(
      { offset: 0x18, size: 4 },
      { offset: 0x1c, size: 4 },
      { offset: 0x2a, size: 2 },
      { offset: 0x2c, size: 2 },
    );
    const phoff = dv.getUint32(0x1c, true);
    const n = dv.getUint16(0x2c, true);
    for (let i = 0; i < n; i++) {
      for (let f = 0; f < 32; f += 4) fields.push({ offset: phoff + i * 32 + f, size: 4 });
    }
  }
  return fields.filter((f) => f.offset + f.size <= b.length);
}

function multibootOffset(b: Uint8Array): number | undefined {
  for (let o = 0; o + 12 <= Math.min(b.length, 8192); o += 4) if (u32At(b, o) === 0x1badb002) return o;
  return undefined;
}

function multibootFields(at: number): Field[] {
  return Array.from({ length: 8 }, (_, i) => ({ offset: at + i * 4, size: 4 as const }));
}

/** A minimal ELF with one PT_LOAD holding `code`, 32- or 64-bit. */
function makeElf(is64: boolean, code: number[], paddr = 0x100000): Uint8Array {
  const eh = is64 ? 64 : 52;
  const ph = is64 ? 56 : 32;
  const out = new Uint8Array(eh + ph + code.length);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1, 0]);
  dv.setUint16(0x10, 2, true); // ET_EXEC
  dv.setUint16(0x12, is64 ? 62 : 3, true);
  dv.setUint32(0x14, 1, true);
  const entry = paddr + eh + ph;
  if (is64) {
    dv.setBigUint64(0x18, BigInt(entry), true);
    dv.setBigUint64(0x20, BigInt(eh), true);
    dv.setUint16(0x34, eh, true);
    dv.setUint16(0x36, ph, true);
    dv.setUint16(0x38, 1, true);
    dv.setUint32(eh, 1, true);
    dv.setUint32(eh + 4, 5, true);
    dv.setBigUint64(eh + 0x10, BigInt(paddr), true);
    dv.setBigUint64(eh + 0x18, BigInt(paddr), true);
    dv.setBigUint64(eh + 0x20, BigInt(out.length), true);
    dv.setBigUint64(eh + 0x28, BigInt(out.length + 0x1000), true);
  } else {
    dv.setUint32(0x18, entry, true);
    dv.setUint32(0x1c, eh, true);
    dv.setUint16(0x28, eh, true);
    dv.setUint16(0x2a, ph, true);
    dv.setUint16(0x2c, 1, true);
    dv.setUint32(eh, 1, true);
    dv.setUint32(eh + 8, paddr, true);
    dv.setUint32(eh + 0xc, paddr, true);
    dv.setUint32(eh + 0x10, out.length, true);
    dv.setUint32(eh + 0x14, out.length + 0x1000, true);
    dv.setUint32(eh + 0x18, 5, true);
  }
  out.set(code, eh + ph);
  return out;
}

/** A multiboot kernel with the a.out kludge (flags bit 16): header at 0, loaded at 1 MiB. */
function makeKludge(code: number[]): Uint8Array {
  const out = new Uint8Array(32 + code.length);
  const dv = new DataView(out.buffer);
  const flags = 0x10003;
  dv.setUint32(0, 0x1badb002, true);
  dv.setUint32(4, flags, true);
  dv.setUint32(8, -(0x1badb002 + flags) >>> 0, true);
  dv.setUint32(12, 0x100000, true); // header_addr
  dv.setUint32(16, 0x100000, true); // load_addr
  dv.setUint32(20, 0, true); // load_end_addr: the whole file
  dv.setUint32(24, 0x100000 + out.length + 0x1000, true); // bss_end_addr
  dv.setUint32(28, 0x100020, true); // entry
  out.set(code, 32);
  return out;
}

/** mov al,'*'; out 0xe9,al; mov al,0; out 0xf4,al; hlt (the same bytes in 32- and 64-bit code) */
const REPORT_AND_EXIT = [0xb0, 0x2a, 0xe6, 0xe9, 0xb0, 0x00, 0xe6, 0xf4, 0xf4];

function seeds(): Seed[] {
  const out: Seed[] = [];
  const file = (name: string) => new Uint8Array(readFileSync(join(ROOT, "examples", "images", name)));
  for (const name of ["protected-hello.elf", "long-crc.elf", "multiboot-info.elf"]) {
    const bytes = file(name);
    const mb = multibootOffset(bytes);
    out.push({
      name,
      bytes,
      fields: [...elfFields(bytes), ...(mb === undefined ? [] : multibootFields(mb))],
      ...(mb === undefined ? {} : { multiboot: mb }),
    });
  }
  for (const is64 of [false, true]) {
    const bytes = makeElf(is64, REPORT_AND_EXIT);
    out.push({ name: `elf${is64 ? 64 : 32}`, bytes, fields: elfFields(bytes) });
  }
  out.push({
    name: "multiboot-kludge",
    bytes: makeKludge(REPORT_AND_EXIT),
    fields: multibootFields(0),
    multiboot: 0,
  });
  const setup = Object.values(SETUP_HEADER).map(({ offset, size }) => ({
    offset,
    size: size as Field["size"],
  }));
  out.push({ name: "bzimage", bytes: bzImage(), fields: setup });
  out.push({
    name: "bzimage-2.02",
    bytes: bzImage({ version: 0x0202, relocatable: false, xloadflags: 0 }),
    fields: setup,
  });
  out.push({ name: "real-hello.bin", bytes: file("real-hello.bin"), fields: [] });
  return out;
}

const SEEDS = seeds();

type Mutation =
  | { kind: "field"; field: number; value: bigint }
  | { kind: "fieldDelta"; field: number; delta: number }
  | { kind: "byte"; at: number; value: number }
  | { kind: "truncate"; length: number }
  | { kind: "append"; bytes: Uint8Array }
  | { kind: "fixChecksum" };

export interface ImageCase {
  seed: number;
  mutations: Mutation[];
  memoryMiB: number;
  options: LoadImageOptions;
}

const INTERESTING = [
  0n,
  1n,
  2n,
  0x7fn,
  0x80n,
  0xffn,
  0x100n,
  0x1000n,
  0x7fffn,
  0xffffn,
  0x100000n,
  0x7fffffffn,
  0x80000000n,
  0xfffff000n,
  0xffffffffn,
  0x100000000n,
  0x7fffffffffffffffn,
  0xffffffffffffffffn,
];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("field" as const),
      field: fc.nat(),
      value: fc.oneof(fc.constantFrom(...INTERESTING), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("fieldDelta" as const),
      field: fc.nat(),
      delta: fc.integer({ min: -4096, max: 4096 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("byte" as const), at: fc.nat(), value: fc.nat(255) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), length: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("append" as const), bytes: fc.uint8Array({ maxLength: 600 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "fixChecksum" as const }) },
);

const options: fc.Arbitrary<LoadImageOptions> = fc.record(
  {
    format: fc.constantFrom("auto", "auto", "auto", "elf", "multiboot", "linux", "flat"),
    cmdline: fc.string({ maxLength: 300 }),
    modules: fc.array(
      fc.record(
        { data: fc.uint8Array({ maxLength: 3000 }), cmdline: fc.string({ maxLength: 40 }) },
        { requiredKeys: ["data"] },
      ),
      { maxLength: 3 },
    ),
    initrd: fc.uint8Array({ maxLength: 5000 }),
  },
  { requiredKeys: [] },
) as fc.Arbitrary<LoadImageOptions>;

const imageCase: fc.Arbitrary<ImageCase> = fc.record({
  seed: fc.nat(SEEDS.length - 1),
  mutations: fc.array(mutation, { minLength: 1, maxLength: 6 }),
  memoryMiB: fc.constantFrom(1, 2, 4, 16, 64),
  options,
});

/** The case's image: its seed with the mutations applied in order. */
export function buildImage(c: ImageCase): Uint8Array {
  const seed = SEEDS[c.seed % SEEDS.length]!;
  let b = seed.bytes.slice();
  for (const m of c.mutations) {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const f = seed.fields.length
      ? seed.fields[("field" in m ? m.field : 0) % seed.fields.length]!
      : undefined;
    switch (m.kind) {
      case "field":
      case "fieldDelta": {
        if (!f || f.offset + f.size > b.length) break;
        const old =
          f.size === 1
            ? BigInt(dv.getUint8(f.offset))
            : f.size === 2
              ? BigInt(dv.getUint16(f.offset, true))
              : f.size === 4
                ? BigInt(dv.getUint32(f.offset, true))
                : dv.getBigUint64(f.offset, true);
        const v = BigInt.asUintN(f.size * 8, m.kind === "field" ? m.value : old + BigInt(m.delta));
        if (f.size === 1) dv.setUint8(f.offset, Number(v));
        else if (f.size === 2) dv.setUint16(f.offset, Number(v), true);
        else if (f.size === 4) dv.setUint32(f.offset, Number(v), true);
        else dv.setBigUint64(f.offset, v, true);
        break;
      }
      case "byte":
        if (b.length) b[m.at % b.length] = m.value;
        break;
      case "truncate":
        b = b.slice(0, m.length % (b.length + 1));
        break;
      case "append": {
        const grown = new Uint8Array(b.length + m.bytes.length);
        grown.set(b);
        grown.set(m.bytes, b.length);
        b = grown;
        break;
      }
      case "fixChecksum":
        if (seed.multiboot !== undefined && seed.multiboot + 12 <= b.length) {
          const at = seed.multiboot;
          dv.setUint32(at + 8, -(u32At(b, at) + u32At(b, at + 4)) >>> 0, true);
        }
        break;
    }
  }
  return b;
}

function checkRun(r: RunResult): void {
  if (!definedStop(r)) {
    const detail = r.error instanceof Error ? `${r.error.name}: ${r.error.message}` : (r.message ?? "");
    throw new OracleViolation(
      `image run ${r.reason}: ${detail.replace(/0x[0-9a-f]+|\d+/gi, "N").slice(0, 120)}`,
      `a loaded image's run ended as "${r.reason}": ${detail}`,
      r.error,
    );
  }
}

export async function runImageCase(c: ImageCase): Promise<CaseOutcome> {
  const image = buildImage(c);
  const vm = await createMachine({ backend: "soft", memoryMiB: c.memoryMiB });
  try {
    let format: string;
    try {
      format = vm.load(image, c.options).format;
    } catch (e) {
      if (e instanceof GuestImageError || e instanceof BootSetupError) {
        return { outcome: e.name, bytes: image.length };
      }
      throw new OracleViolation(
        `image load threw ${errorLine(e)
          .replace(/0x[0-9a-f]+|\d+/gi, "N")
          .slice(0, 100)}`,
        `vm.load threw ${errorLine(e)}`,
        e,
      );
    }
    checkRun(await vm.run({ maxInstructions: 3000, timeoutMs: 200 }));
    return { outcome: `loaded ${format}`, bytes: image.length };
  } finally {
    vm.close();
  }
}

function describeOptions(o: LoadImageOptions): object {
  return {
    ...o,
    ...(o.initrd ? { initrd: hex(o.initrd) } : {}),
    ...(o.modules ? { modules: o.modules.map((m) => ({ ...m, data: hex(m.data) })) } : {}),
  };
}

export const imageTarget: FuzzTarget<ImageCase> = {
  name: "image",
  about: "mutated ELF/multiboot/bzImage images through vm.load: a load or a typed loader error",
  arbitrary: imageCase,
  run: runImageCase,
  describe: (c) =>
    JSON.stringify({
      seed: SEEDS[c.seed % SEEDS.length]!.name,
      image: hex(buildImage(c)),
      memoryMiB: c.memoryMiB,
      options: describeOptions(c.options),
    }),
};

/** The image and options of a describe()d case (regression tests replay these). */
export function parseImageCase(json: string): {
  image: Uint8Array;
  memoryMiB: number;
  options: LoadImageOptions;
} {
  const o = JSON.parse(json) as {
    image: string;
    memoryMiB: number;
    options: Omit<LoadImageOptions, "initrd" | "modules"> & {
      initrd?: string;
      modules?: { data: string; cmdline?: string }[];
    };
  };
  const options: LoadImageOptions = {
    ...o.options,
    ...(o.options.initrd !== undefined ? { initrd: fromHex(o.options.initrd) } : {}),
    ...(o.options.modules
      ? { modules: o.options.modules.map((m) => ({ ...m, data: fromHex(m.data) })) }
      : {}),
  } as LoadImageOptions;
  return { image: fromHex(o.image), memoryMiB: o.memoryMiB, options };
}
