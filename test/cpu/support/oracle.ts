// Client of the host-CPU oracle (test/cpu/oracle/oracle.c): finds or builds the helper, and runs
// batches of cases through one process over a pipe. The record layout mirrors test/cpu/oracle/oracle.h.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { arch, platform } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const CODE_ADDR = 0x200000;
export const SCRATCH_ADDR = 0x300000;
export const SCRATCH_SIZE = 1024;
export const CODE_MAX = 64;
/** base of the 16-bit stack segment (64 KiB) the helper's cases with `stack16` run on */
export const STACK16_ADDR = 0x310000;
/** the helper's LDT selectors: the 16-bit stack segment and the 16-bit code segment (based at CODE_ADDR) */
export const SEL_STACK16 = 0x07;
export const SEL_CODE16 = 0x0f;
const FLAG_STACK16 = 1;
const MAGIC = 0x4f52434c;

/** bytes 0-159 of an FXSAVE image in the state: FCW .. MXCSR, then ST0-7 (16 bytes each) */
export const FX_SIZE = 160;
const FX_OFF = 400;
const SCRATCH_OFF = FX_OFF + FX_SIZE;
const STATE_SIZE = SCRATCH_OFF + SCRATCH_SIZE;
export const REQUEST_SIZE = 16 + CODE_MAX + STATE_SIZE;
export const RESPONSE_SIZE = 16 + STATE_SIZE;

/** Architectural state the oracle takes and returns (64-bit mode, user level). */
export interface CpuState {
  gpr: bigint[];
  rflags: bigint;
  rip: bigint;
  /** 16 registers x 16 bytes */
  xmm: Uint8Array;
  /** the x87/MMX state as bytes 0-159 of an FXSAVE image (FCW, FSW, FTW, ST0-7 as 80-bit
   * values; MXCSR at 24 is the host's on the CPU side); absent: the FNINIT state */
  fx?: Uint8Array;
  scratch: Uint8Array;
}

/** The FXSAVE image prefix of the FNINIT state (FCW 0x37F, everything empty, MXCSR 0x1F80). */
export function initialFx(): Uint8Array {
  const fx = new Uint8Array(FX_SIZE);
  fx[0] = 0x7f;
  fx[1] = 0x03;
  fx[24] = 0x80;
  fx[25] = 0x1f;
  return fx;
}

export interface OracleCase {
  code: Uint8Array;
  state: CpuState;
  /** 64 (default): 64-bit mode; 32: compatibility mode, where only the low 32 bits of RAX..RDI and
   * XMM0-7 are defined afterwards; 16: 16-bit code (CS = SEL_CODE16, based at CODE_ADDR, from IP 0;
   * RIP in the result is linear) */
  bits?: 16 | 32 | 64;
  /** SS is a 16-bit (B = 0) data segment based at STACK16_ADDR; the scratch bytes are then its two
   * ends: 0-511 are SS:0xFE00-0xFFFF, 512-1023 are SS:0x0000-0x01FF */
  stack16?: boolean;
}

export interface OracleResult {
  /** -1 when the code ran to its end, else the exception vector the CPU raised */
  vector: number;
  errorCode: bigint;
  state: CpuState;
}

export class OracleUnavailableError extends Error {
  constructor(
    reason: string,
    /** the helper had to be built and there is no C compiler */
    readonly noCompiler = false,
  ) {
    super(`host-CPU oracle unavailable: ${reason}`);
    this.name = "OracleUnavailableError";
  }
}

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");
const sourceDir = join(repoRoot, "test/cpu/oracle");
const SOURCES = ["oracle.c", "oracle-entry.S", "oracle.h"];

/** Why the oracle cannot run on this host, or undefined when it can. */
export function oracleUnsupportedReason(): string | undefined {
  if (platform() !== "linux" || arch() !== "x64")
    return `needs x86-64 Linux (this is ${platform()}/${arch()})`;
  // no compiler to build a missing helper skips the suite; any other failure fails it (later)
  try {
    oracleBinary();
  } catch (e) {
    if (e instanceof OracleUnavailableError && e.noCompiler) return e.message;
  }
  return undefined;
}

let compat32: { reason: string | undefined } | undefined;

/**
 * Why 32-bit (compatibility-mode) cases cannot run on this host, or undefined when they can. Some
 * hosts (PVM-based VMs among them) give a 64-bit process no working 32-bit code segment: the far
 * jump to selector 0x23 faults and the helper dies with SIGSEGV. Probed once with one NOP.
 */
export function oracle32UnsupportedReason(): string | undefined {
  if (compat32) return compat32.reason;
  let reason = oracleUnsupportedReason();
  if (reason === undefined) {
    const probe: OracleCase = {
      code: Uint8Array.of(0x90),
      bits: 32,
      state: {
        gpr: new Array<bigint>(16).fill(0n),
        rflags: 2n,
        rip: 0n,
        xmm: new Uint8Array(256),
        scratch: new Uint8Array(SCRATCH_SIZE),
      },
    };
    let bin: string | undefined;
    try {
      bin = oracleBinary();
    } catch {
      // a helper that cannot be built fails the suites that use it, with its own error
    }
    const r = bin === undefined ? undefined : spawnSync(bin, [], { input: encodeRequests([probe]) });
    if (r?.signal)
      reason = `this host cannot run 32-bit code segments (a far jump to selector 0x23 ended the oracle with ${r.signal})`;
  }
  compat32 = { reason };
  if (reason !== undefined) console.warn(`32-bit oracle cases skipped: ${reason}`);
  return reason;
}

let ldt16: { reason: string | undefined } | undefined;

/**
 * Why cases with 16-bit code or a 16-bit stack segment (LDT descriptors the helper installs with
 * modify_ldt) cannot run on this host, or undefined when they can. The helper checks that the
 * processor sees its LDT (`--probe-ldt`); then one 16-bit case on the 16-bit stack must come back.
 */
export function oracle16UnsupportedReason(): string | undefined {
  if (ldt16) return ldt16.reason;
  let reason = oracleUnsupportedReason();
  if (reason === undefined) {
    let bin: string | undefined;
    try {
      bin = oracleBinary();
    } catch {
      // a helper that cannot be built fails the suites that use it, with its own error
    }
    if (bin !== undefined) {
      const probe = spawnSync(bin, ["--probe-ldt"], { encoding: "utf8" });
      if (probe.status !== 0) {
        reason = `this host runs no 16-bit LDT segments (${probe.stdout.trim() || probe.stderr.trim() || probe.signal})`;
      } else {
        const nop: OracleCase = {
          code: Uint8Array.of(0x90),
          bits: 16,
          stack16: true,
          state: {
            gpr: new Array<bigint>(16).fill(0n),
            rflags: 2n,
            rip: 0n,
            xmm: new Uint8Array(256),
            scratch: new Uint8Array(SCRATCH_SIZE),
          },
        };
        const r = spawnSync(bin, [], { input: encodeRequests([nop]) });
        if (r.signal || r.status !== 0)
          reason = `this host cannot run 16-bit code on a 16-bit stack segment (the oracle ended with ${r.signal ?? `status ${r.status}`}: ${r.stderr.toString().trim()})`;
      }
    }
  }
  ldt16 = { reason };
  if (reason !== undefined) console.warn(`16-bit oracle cases skipped: ${reason}`);
  return reason;
}

let cachedPath: string | undefined;

/** Path of an up-to-date oracle binary: CMake's build when newer than the sources, else one built
 * with `cc` into .cache/oracle/ under a name keyed by the sources' hash. */
export function oracleBinary(): string {
  if (cachedPath) return cachedPath;
  if (platform() !== "linux" || arch() !== "x64") {
    throw new OracleUnavailableError(`needs x86-64 Linux (this is ${platform()}/${arch()})`);
  }
  const sources = SOURCES.map((f) => join(sourceDir, f));
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  const cmakeBuilt = join(repoRoot, "build/test/cpu/oracle/cpu-oracle");
  let path: string;
  if (existsSync(cmakeBuilt) && statSync(cmakeBuilt).mtimeMs > newest) {
    path = cmakeBuilt;
  } else {
    const hash = createHash("sha256");
    for (const f of sources) hash.update(readFileSync(f));
    const cacheDir = join(repoRoot, ".cache/oracle");
    path = join(cacheDir, `cpu-oracle-${hash.digest("hex").slice(0, 16)}`);
    if (!existsSync(path)) build(cacheDir, path);
  }
  // the record layout is compiled into the helper: refuse one that disagrees with this file
  const v = spawnSync(path, ["--version"], { encoding: "utf8" });
  const want = `request=${REQUEST_SIZE} response=${RESPONSE_SIZE}`;
  if (v.error || !v.stdout.includes(want)) {
    throw new OracleUnavailableError(`${path} --version says "${v.stdout?.trim()}", expected "${want}"`);
  }
  cachedPath = path;
  return path;
}

function build(cacheDir: string, out: string): void {
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const cc = process.env.CC ?? "cc";
  const r = spawnSync(
    cc,
    ["-O2", "-Wall", "-o", tmp, join(sourceDir, "oracle.c"), join(sourceDir, "oracle-entry.S")],
    {
      encoding: "utf8",
    },
  );
  if (r.error)
    throw new OracleUnavailableError(`no C compiler to build it (${cc}: ${r.error.message})`, true);
  if (r.status !== 0) throw new OracleUnavailableError(`building with ${cc} failed: ${r.stderr}`);
  renameSync(tmp, out);
}

export function encodeRequests(cases: readonly OracleCase[]): Buffer {
  const buf = Buffer.alloc(cases.length * REQUEST_SIZE);
  cases.forEach((c, i) => {
    const o = i * REQUEST_SIZE;
    if (c.code.length > CODE_MAX)
      throw new RangeError(`case ${i}: code is ${c.code.length} bytes (max ${CODE_MAX})`);
    buf.writeUInt32LE(MAGIC, o);
    buf.writeUInt32LE(c.code.length, o + 4);
    buf.writeUInt32LE(c.bits ?? 64, o + 8);
    buf.writeUInt32LE(c.stack16 ? FLAG_STACK16 : 0, o + 12);
    buf.set(c.code, o + 16);
    writeState(buf, o + 16 + CODE_MAX, c.state);
  });
  return buf;
}

function writeState(buf: Buffer, o: number, s: CpuState): void {
  for (let r = 0; r < 16; r++) buf.writeBigUInt64LE(BigInt.asUintN(64, s.gpr[r]!), o + r * 8);
  buf.writeBigUInt64LE(BigInt.asUintN(64, s.rflags), o + 128);
  buf.writeBigUInt64LE(BigInt.asUintN(64, s.rip), o + 136);
  buf.set(s.xmm.subarray(0, 256), o + 144);
  buf.set((s.fx ?? initialFx()).subarray(0, FX_SIZE), o + FX_OFF);
  buf.set(s.scratch.subarray(0, SCRATCH_SIZE), o + SCRATCH_OFF);
}

function readState(buf: Buffer, o: number): CpuState {
  const gpr: bigint[] = [];
  for (let r = 0; r < 16; r++) gpr.push(buf.readBigUInt64LE(o + r * 8));
  return {
    gpr,
    rflags: buf.readBigUInt64LE(o + 128),
    rip: buf.readBigUInt64LE(o + 136),
    xmm: new Uint8Array(buf.subarray(o + 144, o + FX_OFF)),
    fx: new Uint8Array(buf.subarray(o + FX_OFF, o + SCRATCH_OFF)),
    scratch: new Uint8Array(buf.subarray(o + SCRATCH_OFF, o + SCRATCH_OFF + SCRATCH_SIZE)),
  };
}

/** Runs the cases on the host CPU, one helper process per call. */
export function runOracle(cases: readonly OracleCase[]): OracleResult[] {
  const bin = oracleBinary();
  const input = encodeRequests(cases);
  const r = spawnSync(bin, [], { input, maxBuffer: cases.length * RESPONSE_SIZE + 4096 });
  if (r.error) throw new OracleUnavailableError(`running ${bin}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new OracleUnavailableError(`${bin} exited with ${r.status ?? r.signal}: ${r.stderr.toString()}`);
  }
  const out = r.stdout;
  if (out.length !== cases.length * RESPONSE_SIZE) {
    throw new OracleUnavailableError(`expected ${cases.length} responses, got ${out.length} bytes`);
  }
  const results: OracleResult[] = [];
  for (let i = 0; i < cases.length; i++) {
    const o = i * RESPONSE_SIZE;
    if (out.readUInt32LE(o) !== MAGIC) throw new OracleUnavailableError(`response ${i} has a bad magic`);
    results.push({
      vector: out.readInt32LE(o + 4),
      errorCode: out.readBigUInt64LE(o + 8),
      state: readState(out, o + 16),
    });
  }
  return results;
}
