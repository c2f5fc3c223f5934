// Fuzz target "guest": random and mostly-valid guest code in real, protected and long mode on the
// soft backend, with the PC devices, the platform interrupt controllers and three virtio-mmio devices
// attached. Code is a list of chunks: instruction templates that reach the host side
// (x86-templates.ts), single instructions iced-x86 decodes as valid for the mode (anything in the
// ISA: x87, SSE, AVX, prefixes), and raw random bytes. Exceptions go to handlers that skip a byte
// and return, so a fault does not end the guest at its first instruction.
//
// Oracle: the host survives, and the run ends within its limits with a defined reason; no
// exception escapes the VMM, the run never ends as "error", "internal-error" or "fail-entry" (the
// guest cannot make a correct VMM fail its own VM entry), and the vCPU's state is readable after.

import fc from "fast-check";
import { type BlockImage, VirtioBlk, VirtioConsole, VirtioRng } from "../../lib/devices/virtio/index.js";
import { addPcDevices, createMachine, type IoExit, type MmioExit, type RunResult } from "../../lib/index.js";
import { disassemble } from "../../lib/inspect/disasm.js";
import { addVirtioDevice } from "../../lib/vmm/virtio.js";
import { entryChecks } from "../../lib/vmx/vmcs.js";
import { type CaseOutcome, definedStop, type FuzzTarget, fromHex, hex, OracleViolation } from "./target.js";
import { type Bits, type GuestMap, templateChunk } from "./x86-templates.js";

export type Mode = "real" | "protected" | "long";

export interface GuestCase {
  mode: Mode;
  code: Uint8Array;
  /** bytes at the data area (descriptor tables, VMCS regions, ring memory for virtio) */
  data: Uint8Array;
  /** rax, rbx, rcx, rdx, rsi, rdi, rbp at entry */
  regs: number[];
  maxInstructions: number;
  /** run with runSync() instead of run() */
  sync: boolean;
  /** the run's time limit (default RUN_TIMEOUT_MS; regression tests that must reach HLT on a loaded host give more) */
  timeoutMs?: number;
}

const BITS: Record<Mode, Bits> = { real: 16, protected: 32, long: 64 };
export const RUN_TIMEOUT_MS = 300;
/**
 * How far past maxInstructions a run may go: the budget is checked between entries and a REP
 * ends its block, so one instruction's worth of overshoot is allowed, not more.
 */
const INSTRUCTION_SLACK = 64;
const DATA_SIZE = 0x4000;
const VIRTIO_BASE = 0xd0000000;

export function guestMap(mode: Mode): GuestMap {
  return {
    // real mode reaches [ebx] only below 64 KiB (DS limit), under the boot sector's stack
    data: mode === "real" ? 0x3000 : 0x200000,
    dataSize: DATA_SIZE,
    virtio: [VIRTIO_BASE, VIRTIO_BASE + 0x1000, VIRTIO_BASE + 0x2000],
  };
}

/** The first instruction `bytes` decode to in `bits`-bit code, or the first byte when invalid. */
function firstInstruction(bytes: Uint8Array, bits: Bits): number[] {
  const [first] = disassemble(bytes, 0, bits, 1);
  if (!first || first.invalid) return [bytes[0] ?? 0x90];
  return [...first.bytes];
}

function codeArbitrary(mode: Mode): fc.Arbitrary<Uint8Array> {
  const bits = BITS[mode];
  const chunk = fc.oneof(
    { weight: 4, arbitrary: templateChunk(bits, guestMap(mode)) },
    {
      weight: 4,
      arbitrary: fc.uint8Array({ minLength: 15, maxLength: 15 }).map((b) => firstInstruction(b, bits)),
    },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => [...b]) },
  );
  return fc.array(chunk, { minLength: 1, maxLength: 48 }).map((chunks) => new Uint8Array(chunks.flat()));
}

const guestCase: fc.Arbitrary<GuestCase> = fc.constantFrom<Mode>("real", "protected", "long").chain((mode) =>
  fc.record({
    mode: fc.constant(mode),
    code: codeArbitrary(mode),
    data: fc.uint8Array({ maxLength: DATA_SIZE }),
    regs: fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 7, maxLength: 7 }),
    maxInstructions: fc.constantFrom(1000, 5000, 20000),
    sync: fc.boolean(),
  }),
);

/** A disk held in memory (virtio-blk's store; no file, nothing left behind). */
function memoryDisk(size: number): BlockImage {
  const bytes = new Uint8Array(size);
  return {
    size,
    readonly: false,
    read: (into, position) => into.set(bytes.subarray(position, position + into.length)),
    write: (from, position) => bytes.set(from, position),
    flush: () => {},
    close: () => {},
  };
}

/** Vectors whose exceptions push an error code. */
const ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
const IDT = 0x1000;
const STUBS = 0x2000;

/**
 * Exception handlers that step the saved IP past one byte and return (the fault's instruction, or
 * a byte of it: the guest goes on with whatever follows), and interrupt handlers that only return.
 */
function installHandlers(
  mode: Mode,
  write: (gpa: number, bytes: number[]) => void,
): { base: bigint; limit: number } | undefined {
  if (mode === "real") {
    // push bp; mov bp, sp; inc word [bp+2]; pop bp; iret   /   iret
    write(STUBS, [0x55, 0x89, 0xe5, 0xff, 0x46, 0x02, 0x5d, 0xcf, 0xcf]);
    const ivt: number[] = [];
    for (let v = 0; v < 256; v++) ivt.push(...(v < 32 ? [STUBS & 0xff, STUBS >> 8] : [8, STUBS >> 8]), 0, 0);
    write(0, ivt);
    return undefined;
  }
  const long = mode === "long";
  // [add esp/rsp, 4/8;] inc dword/qword [esp/rsp]; iret(q)
  const skip = long ? [0x48, 0xff, 0x04, 0x24, 0x48, 0xcf] : [0xff, 0x04, 0x24, 0xcf];
  const pop = long ? [0x48, 0x83, 0xc4, 0x08] : [0x83, 0xc4, 0x04];
  const iret = long ? [0x48, 0xcf] : [0xcf];
  const withCode = STUBS;
  const noCode = STUBS + 0x20;
  const plain = STUBS + 0x40;
  write(withCode, [...pop, ...skip]);
  write(noCode, skip);
  write(plain, iret);
  const gate = long ? 16 : 8;
  const idt = new Uint8Array(256 * gate);
  const dv = new DataView(idt.buffer);
  for (let v = 0; v < 256; v++) {
    const target = v >= 32 ? plain : ERROR_CODE.has(v) ? withCode : noCode;
    dv.setUint16(v * gate, target & 0xffff, true);
    dv.setUint16(v * gate + 2, long ? 0x18 : 0x08, true);
    dv.setUint8(v * gate + 5, 0x8e); // present, DPL 0, interrupt gate
    dv.setUint16(v * gate + 6, target >>> 16, true);
  }
  write(IDT, [...idt]);
  return { base: BigInt(IDT), limit: idt.length - 1 };
}

/**
 * A guest is stuck on one instruction when, with no instruction retired in between, the same port or
 * MMIO access exits this many times: an access the host completed is answered from the instruction's
 * log when it runs again, so each of an instruction's accesses exits once (FXSAVE makes 72-128 of
 * them, all different), and a REP iteration counts as an instruction. Counted, not timed, so a slow
 * host finds the same.
 */
const STUCK_REPEATS = 3;

/** Feeds port/MMIO exits with the instruction count at each; true once the guest is stuck (above). */
export function stuckDetector(): (e: IoExit | MmioExit, retired: number) => boolean {
  const streak = new Map<string, number>();
  let last = -1;
  return (e, retired) => {
    if (retired !== last) streak.clear();
    last = retired;
    const key =
      e.kind === "io" ? `io ${e.direction} ${e.port}/${e.size}` : `mmio ${e.write} ${e.address}/${e.length}`;
    const seen = (streak.get(key) ?? 0) + 1;
    streak.set(key, seen);
    return seen >= STUCK_REPEATS;
  };
}

/** "rep movsd" -> "movsd", "lock add [rax],al" -> "add" */
const mnemonic = (text: string): string =>
  text.split(" ").find((w) => !/^(rep|repe|repz|repne|repnz|lock|xacquire|xrelease|bnd)$/.test(w)) ?? "?";

function checkResult(c: GuestCase, r: RunResult, stuck: boolean, atRip: () => string): void {
  if (!definedStop(r)) {
    const detail = r.error instanceof Error ? `${r.error.name}: ${r.error.message}` : (r.message ?? "");
    throw new OracleViolation(
      `guest run ${r.reason}: ${detail.replace(/0x[0-9a-f]+|\d+/gi, "N").slice(0, 120)}`,
      `the run ended as "${r.reason}": ${detail}`,
      r.error,
    );
  }
  if (stuck) {
    const at = atRip();
    throw new OracleViolation(
      `guest stuck on ${mnemonic(at)}: device exits without instructions retiring`,
      `the same port/MMIO access exited ${STUCK_REPEATS} times with no instruction retired, at "${at}": the instruction's access repeats without completing`,
    );
  }
  if (r.instructions !== undefined && r.instructions > c.maxInstructions + INSTRUCTION_SLACK) {
    throw new OracleViolation(
      "guest run past maxInstructions",
      `the run retired ${r.instructions} instructions with maxInstructions ${c.maxInstructions}`,
    );
  }
}

export async function runGuestCase(c: GuestCase): Promise<CaseOutcome> {
  // every entry re-checks the whole guest state: a state the interpreter should never have left
  // fails the entry, which the oracle reports (the soft backend trusts its own saved state)
  entryChecks.all = true;
  const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
  try {
    addPcDevices(vm);
    addVirtioDevice(vm, (slot) => new VirtioBlk({ ...slot, image: memoryDisk(64 * 1024), serial: "fuzz" }));
    addVirtioDevice(vm, (slot) => new VirtioRng(slot));
    addVirtioDevice(vm, (slot) => new VirtioConsole(slot));
    vm.loadFlat(c.code, { mode: c.mode });
    const map = guestMap(c.mode);
    vm.memory.write(map.data, c.data);
    const idt = installHandlers(c.mode, (gpa, bytes) => vm.memory.write(gpa, new Uint8Array(bytes)));
    const cpu = vm.vcpu(0);
    if (idt) cpu.setSregs({ idt: { ...cpu.getSregs().idt, ...idt } });
    const [rax, rbx, rcx, rdx, rsi, rdi, rbp] = c.regs.map((v) => BigInt(v));
    cpu.setRegs({ rax, rbx, rcx, rdx, rsi, rdi, rbp } as Parameters<typeof cpu.setRegs>[0]);
    const limits = { maxInstructions: c.maxInstructions, timeoutMs: c.timeoutMs ?? RUN_TIMEOUT_MS };
    // the guest is stopped as soon as it is stuck (see STUCK_REPEATS)
    const isStuck = stuckDetector();
    let stuck = false;
    vm.on("exit", (e) => {
      if (e.kind !== "io" && e.kind !== "mmio") return;
      if (isStuck(e, cpu.backend.instructionsRetired?.() ?? 0) && !stuck) {
        stuck = true;
        vm.stop();
      }
    });
    const result = c.sync ? vm.runSync(limits) : await vm.run(limits);
    checkResult(c, result, stuck, () => {
      try {
        return cpu.disassemble(1)[0]?.text ?? "?";
      } catch {
        return "?";
      }
    });
    // the state the guest left must be readable: registers, descriptors, a dump with disassembly
    cpu.getRegs();
    cpu.getSregs();
    cpu.dump();
    return { outcome: result.reason, bytes: c.code.length };
  } finally {
    vm.close();
  }
}

export const guestTarget: FuzzTarget<GuestCase> = {
  name: "guest",
  about:
    "random and template guest code, real/protected/long mode, soft backend: runs end with a defined reason within limits",
  arbitrary: guestCase,
  run: runGuestCase,
  describe: (c) =>
    JSON.stringify({
      mode: c.mode,
      code: hex(c.code),
      data: hex(c.data),
      regs: c.regs,
      maxInstructions: c.maxInstructions,
      sync: c.sync,
    }),
};

/** A case back from describe()'s JSON (for regression tests and replays by hand). */
export function parseGuestCase(json: string): GuestCase {
  const o = JSON.parse(json) as Omit<GuestCase, "code" | "data"> & { code: string; data: string };
  return { ...o, code: fromHex(o.code), data: fromHex(o.data) };
}
