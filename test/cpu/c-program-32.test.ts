// A freestanding C program compiled by gcc -O2 -m32 (i686 + SSE2), run on the interpreter in 32-bit
// protected mode with paging on (4 KiB pages below 4 MiB, one 4 MiB page above). The expected output
// is what the same source printed when built hosted (-m32) and run on the host CPU. Source:
// examples/guests/c-program-32.c; image and expected output: test/support/c-program-32-image.ts,
// both written by examples/guests/c-program-32.sh (CMake target c-program-32), so this test needs
// no compiler.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Decoder, DecoderOptions, Mnemonic, OpKind, Register } from "iced-x86";
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { EXPECTED_LINES, IMAGE_BASE64, SOURCE_SHA256, TEXT_SIZE } from "../support/c-program-32-image.js";
import { EXC_LOG, makeGuest, r32 } from "./guest.js";

const LOAD = 0x100000;
const PAGE_DIR = 0x40000;
const PAGE_TABLE = 0x41000;
/** in the 4 MiB page; 16-byte aligned, as the i386 ABI wants it before a CALL */
const STACK_TOP = 0x7ff000;
const IMAGE = Buffer.from(IMAGE_BASE64, "base64");
const SOURCE = new URL("../../examples/guests/c-program-32.c", import.meta.url);

const CR0_PE_ET_WP_PG = 0x80010011n;
const CR4_PSE_OSFXSR_OSXMMEXCPT = 0x610n;

function pagedGuest() {
  const g = makeGuest("prot32", []);
  const dv = new DataView(g.ram.buffer, g.ram.byteOffset, g.ram.byteLength);
  for (let i = 0; i < 1024; i++) dv.setUint32(PAGE_TABLE + 4 * i, (i << 12) | 3, true); // P | RW
  dv.setUint32(PAGE_DIR, PAGE_TABLE | 3, true);
  dv.setUint32(PAGE_DIR + 4, 0x400000 | 0x83, true); // P | RW | PS
  g.cpu.setControl("cr4", CR4_PSE_OSFXSR_OSXMMEXCPT);
  g.cpu.setControl("cr3", BigInt(PAGE_DIR));
  g.cpu.setControl("cr0", CR0_PE_ET_WP_PG);
  g.ram.set(IMAGE, LOAD);
  g.cpu.setRip(BigInt(LOAD));
  g.cpu.setGpr(4, BigInt(STACK_TOP - 4)); // as after a CALL
  return g;
}

/** The instruction classes the image's .text holds, by iced-x86's decoder. */
function instructionClasses(): Set<string> {
  const seen = new Set<string>();
  const decoder = new Decoder(32, IMAGE.subarray(0, TEXT_SIZE), DecoderOptions.None);
  decoder.ip = BigInt(LOAD);
  while (decoder.canDecode) {
    const insn = decoder.decode();
    const name = Mnemonic[insn.mnemonic] ?? String(insn.mnemonic);
    const compares = name.startsWith("Cmps") || name.startsWith("Scas");
    const prefix = insn.hasRepnePrefix ? "repne " : insn.hasRepePrefix ? (compares ? "repe " : "rep ") : "";
    seen.add(prefix + name);
    if (name.startsWith("Cmov")) seen.add("Cmovcc");
    if (name === "Jmp" && insn.op0Kind === OpKind.Memory && insn.memoryIndex !== Register.None) {
      seen.add("jump table");
    }
    if (name === "Call" && insn.op0Kind === OpKind.Register) seen.add("indirect call");
    insn.free();
  }
  decoder.free();
  return seen;
}

describe("gcc -O2 -m32 output", () => {
  it("the image was built from the committed source", () => {
    const digest = createHash("sha256").update(readFileSync(SOURCE)).digest("hex");
    // on a mismatch, rebuild: sh examples/guests/c-program-32.sh
    expect(digest).toBe(SOURCE_SHA256);
  });

  it("holds the 32-bit code gcc emits for 64-bit math, tables, string ops, bitfields, SSE2 and x87", () => {
    const seen = instructionClasses();
    const wanted = [
      ...["Adc", "Sbb", "Shld", "Shrd", "Mul", "Div", "Bsr", "Bswap", "Cmovcc"],
      ...[
        "jump table",
        "indirect call",
        "rep Movsb",
        "rep Movsd",
        "rep Stosb",
        "rep Stosd",
        "repe Cmpsb",
        "repne Scasb",
        "Std",
      ],
      ...["Pmuludq", "Pmaddwd", "Psadbw", "Pshufd", "Pmovmskb", "Movdqa", "Sqrtsd", "Cvttsd2si"],
      ...["Fild", "Fistp", "Fldcw"],
    ];
    expect(wanted.filter((w) => !seen.has(w))).toEqual([]);
  });

  it("runs to the same output as the host CPU, paging on, with no exception or #UD", () => {
    const g = pagedGuest();
    const stop = g.run(20_000_000);
    const out = String.fromCharCode(...g.out);
    expect(out).toBe(EXPECTED_LINES.map((line) => `${line}\n`).join(""));
    expect(stop).toBe(StopReason.Halted);
    expect(r32(g.ram, EXC_LOG)).toBe(0xffffffff); // no handler of makeGuest's IDT ran
    expect(g.cpu.udTotal).toBe(0);
    expect(g.cpu.getControl("cr0")).toBe(CR0_PE_ET_WP_PG);
  });
});
