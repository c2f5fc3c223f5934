// The RDPID/FSGSBASE/PKU guest (test/soft/guests/cpu-features.S, long mode), how a program runs it
// (createMachine + addPcDevices, debugcon output) and what it prints where the SDM (Vol. 2B RDPID,
// RDFSBASE/WRFSBASE, RDPKRU/WRPKRU; Vol. 3A 2.5, 4.6.2, 4.7) says a CPU that offers all of them does:
// shared by the soft backend's test (test/soft/cpu-features.test.ts) and the KVM comparison
// (test/kvm/cpu-features.test.ts), which compares the lines of the features its CPUID offers and
// checks that the others are refused.

import { GP0, NONE, tryResult as r, runDebugconGuest, UD } from "./debugcon-guest.js";

export { GUESTS } from "./debugcon-guest.js";

export function runCpuFeatures(backend: "soft" | "kvm" = "soft", timeoutMs = 60_000) {
  return runDebugconGuest("cpu-features-64.bin", "long", backend, timeoutMs);
}

/** the page with protection key 1 that the PKU checks read and write (KEY_DATA in the guest) */
const KEY_DATA = 0x58000;
/** #PF error code bits (SDM Vol. 3A 4.7): present, write, user-mode access, protection key */
const P = 1;
const W = 2;
const U = 4;
const PK = 0x20;

/** the lines of each feature, keyed by the feature whose CPUID bit they need */
export const EXPECTED = {
  // OSPKE reads 0 until the guest sets CR4.PKE
  cpuid: "cpuid.7.0: fsgsbase=00000001 pku=00000001 ospke=00000000 rdpid=00000001\n",
  rdtscpBit: "cpuid.80000001: rdtscp=00000001\n",
  // WRMSR IA32_TSC_AUX (offered with RDPID or RDTSCP), RDPID zero-extends it into RAX, at any CPL
  rdpid: `rdpid: wrmsr=${NONE} value=00000000:89abcdef cpl3=${NONE} value=89abcdef\n`,
  // RDTSCP's ECX is IA32_TSC_AUX as well
  rdtscp: "rdtscp: ecx=13579bdf\n",
  fsgsbase:
    // CR4.FSGSBASE = 0: the four instructions are #UD; MOV to CR4 takes the bit
    `fsgsbase: off=${UD} off-wrgsbase=${UD} mov-cr4=${NONE}\n` +
    // WRFSBASE/WRGSBASE load what RDFSBASE/RDGSBASE and RDMSR IA32_FS_BASE/IA32_GS_BASE read; a
    // non-canonical value is #GP(0) and leaves the base; WRMSR IA32_FS_BASE is what RDFSBASE reads
    "fsgsbase-rw: fs=00007fff:dead1000 gs=ffff8000:12345000 msr-fs=00007fff:dead1000 msr-gs=ffff8000:12345000 " +
    `noncanonical-fs=${GP0} noncanonical-gs=${GP0} fs=00007fff:dead1000 wrmsr-fs=00000012:00345000\n` +
    // they run at CPL 3 too; clearing CR4.FSGSBASE makes them #UD again
    `fsgsbase-cpl3: cpl3=${NONE} fs=00abc000 gs=00000000:00def000 off=${UD}\n`,
  pku:
    // CR4.PKE = 0: RDPKRU and WRPKRU are #UD; CPUID.7.0:ECX.OSPKE follows CR4.PKE; PKRU is 0 at reset
    `pku: off=${UD} off-wrpkru=${UD} ospke=00000000 mov-cr4=${NONE} ospke=00000001 pkru=00000000\n` +
    // RDPKRU with ECX != 0, WRPKRU with ECX or EDX != 0: #GP(0); WRPKRU then RDPKRU round-trips
    `pku-pkru: rdpkru-ecx=${GP0} wrpkru-ecx=${GP0} wrpkru-edx=${GP0} pkru=12345678\n` +
    // user accesses to a page with key 1: AD1 stops reads and writes, WD1 writes; fetches from a
    // key-1 page are never checked; the rights of other keys do not matter
    `pku-user: ad-read=${r(14, P | U | PK, KEY_DATA)} ad-write=${r(14, P | W | U | PK, KEY_DATA + 4)} ` +
    `ad-fetch=${NONE} wd-read=${NONE} value=5a5a5a5a wd-write=${r(14, P | W | U | PK, KEY_DATA + 4)} ` +
    `other-keys=${NONE}\n` +
    // supervisor accesses to the user page (SMAP off): AD stops both (a translation cached before
    // WRPKRU does not outlive it), WD stops writes only with CR0.WP = 1; supervisor pages have no key
    `pku-supervisor: ad-read=${r(14, P | PK, KEY_DATA + 4)} ad-write=${r(14, P | W | PK, KEY_DATA + 8)} ` +
    `wd-read=${NONE} wd-write=${r(14, P | W | PK, KEY_DATA + 12)} wd-write-wp0=${NONE} kernel=${NONE} ` +
    "value=600dcafe\n" +
    // CR4.PKE = 0 again: keys are ignored, OSPKE reads 0, RDPKRU is #UD
    `pku-off: off=${NONE} ospke=00000000 rdpkru=${UD}\n`,
  done: "done\n",
} as const;

export const EXPECTED_OUT =
  EXPECTED.cpuid +
  EXPECTED.rdtscpBit +
  EXPECTED.rdpid +
  EXPECTED.rdtscp +
  EXPECTED.fsgsbase +
  EXPECTED.pku +
  EXPECTED.done;

/** what a CPU that does not offer the feature prints: MOV to CR4 of its bit is #GP(0), its
 * instructions #UD (RDPID is not tried where RDSEED, whose opcode it shares, is offered) */
export const NOT_OFFERED = {
  rdpid: [`rdpid: ud=${UD}\n`, "rdpid:\n"],
  fsgsbase: `fsgsbase: mov-cr4=${GP0} rdfsbase=${UD}\n`,
  pku: `pku: mov-cr4=${GP0} rdpkru=${UD}\n`,
} as const;
