// Disassembly with iced-x86 (NASM syntax), for dumps around RIP and for traces.

import { createRequire } from "node:module";

type Iced = typeof import("iced-x86");
let iced: Iced | undefined;

// iced-x86 compiles its WebAssembly when first required, which costs a large share of the
// `nodevmm` start-up time; only crash reports and --dump-regs disassemble, so it loads on first use.
function loadIced(): Iced {
  iced ??= createRequire(import.meta.url)("iced-x86") as Iced;
  return iced;
}

/** One decoded instruction, as disassemble() returns it. */
export interface DisassembledInstruction {
  /** The instruction's address (RIP for the first, then following on). */
  address: bigint;
  /** Its length in bytes. */
  length: number;
  /** Its bytes. */
  bytes: Uint8Array;
  /** Intel-syntax text, e.g. "mov eax, 1"; "(bad)" when invalid. */
  text: string;
  /** the bytes did not decode to a valid instruction (or ran out) */
  invalid: boolean;
}

/**
 * Decodes up to `count` instructions from `bytes`, the first at `rip`. Stops early when the bytes
 * run out; an undecodable byte sequence yields one "(bad)" entry and stops.
 */
export function disassemble(
  bytes: Uint8Array,
  rip: bigint | number,
  bitness: 16 | 32 | 64,
  count = 16,
): DisassembledInstruction[] {
  if (bitness !== 16 && bitness !== 32 && bitness !== 64) {
    throw new RangeError(`bitness must be 16, 32 or 64, got ${String(bitness)}`);
  }
  const out: DisassembledInstruction[] = [];
  if (bytes.length === 0 || count <= 0) return out;
  const { Decoder, DecoderOptions, Formatter, FormatterSyntax } = loadIced();
  const decoder = new Decoder(bitness, bytes, DecoderOptions.None);
  const formatter = new Formatter(FormatterSyntax.Nasm);
  try {
    decoder.ip = BigInt.asUintN(64, BigInt(rip));
    let offset = 0;
    while (out.length < count && decoder.canDecode) {
      const ins = decoder.decode();
      try {
        const invalid = ins.isInvalid;
        const length = invalid ? Math.max(1, ins.length) : ins.length;
        out.push({
          address: ins.ip,
          length,
          bytes: bytes.slice(offset, offset + length),
          text: invalid ? "(bad)" : formatter.format(ins),
          invalid,
        });
        offset += length;
        if (invalid) break;
      } finally {
        ins.free();
      }
    }
  } finally {
    decoder.free();
    formatter.free();
  }
  return out;
}

/** "0000000000007c00  b8 34 12        mov ax,1234h" per instruction. */
export function formatDisassembly(list: readonly DisassembledInstruction[], addressWidth = 16): string {
  return list
    .map((i) => {
      const hexBytes = [...i.bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
      return `${i.address.toString(16).padStart(addressWidth, "0")}  ${hexBytes.padEnd(30)} ${i.text}`;
    })
    .join("\n");
}
