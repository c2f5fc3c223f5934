// The SMEP/SMAP/UMIP guest (test/soft/guests/access-rights.S), how a program runs it (createMachine
// + addPcDevices, debugcon output) and what it prints where the SDM (Vol. 3A 4.6, 4.7, 2.5) says a
// CPU that offers all three does: shared by the soft backend's test (test/soft/access-rights.test.ts)
// and the KVM comparison (test/kvm/access-rights.test.ts), which compares the lines of the features
// its CPUID offers and checks that CR4 refuses the others.

import { GP0, NONE, tryResult as r, runDebugconGuest, UD } from "./debugcon-guest.js";

export { GUESTS } from "./debugcon-guest.js";
export type Bits = 32 | 64;

export function runAccessRights(bits: Bits, backend: "soft" | "kvm" = "soft") {
  return runDebugconGuest(`access-rights-${bits}.bin`, bits === 64 ? "long" : "protected", backend);
}

/** the user page of the image (USER_CODE, .org 0x3000 from 0x10000) and the guest's fixed pages */
const USER_CODE = 0x13000;
const USER_DATA = 0x55000;
const USER_LDT = 0x56000;

/** the lines of each feature, keyed by the feature whose CPUID bit they need */
export const EXPECTED = {
  cpuid: "cpuid.7.0: smep=00000001 smap=00000001 umip=00000001\n",
  smep:
    // SMEP off: the call runs; MOV to CR4 takes the bit; on: a supervisor fetch from a user page is
    // #PF with P|I (0x11); supervisor code and user code at CPL 3 still run
    `smep: off=${NONE} mov-cr4=${NONE} on=${r(14, 0x11, USER_CODE)} kernel=${NONE} user=${NONE}\n`,
  smap:
    // the implicit access (an LDT on a user page, loaded at CPL 3 with AC = 1) is allowed with SMAP off
    `smap: implicit-off=${NONE} mov-cr4=${NONE}\n` +
    // AC = 0: reads P (1), writes P|W (3); AC = 1 (STAC): both allowed; CLAC takes back what a read
    // cached under AC = 1; supervisor data is not affected
    `smap-supervisor: read=${r(14, 1, USER_DATA)} write=${r(14, 3, USER_DATA + 4)} stac-rw=${NONE} ` +
    `value=12345678 clac=${r(14, 1, USER_DATA + 16)} kernel=${NONE}\n` +
    // user-mode accesses are not SMAP's business; the implicit supervisor read of the LDT at CPL 3
    // faults whatever AC holds, as a supervisor access (error code P, no U/S)
    `smap-cpl3: user=${NONE} implicit=${r(14, 1, USER_LDT + 8)}\n`,
  stac: `stac-clac: ac-after-stac=00000001 ac-after-clac=00000000 cpl3-stac=${UD} cpl3-clac=${UD}\n`,
  umip:
    `umip: off=${NONE} mov-cr4=${NONE} kernel=${NONE}\n` +
    `umip-cpl3: sgdt=${GP0} sidt=${GP0} sldt=${GP0} str=${GP0} smsw=${GP0} smsw-mem=${GP0}\n`,
  done: "done\n",
} as const;

export const EXPECTED_OUT = Object.values(EXPECTED).join("");

/** what a CPU that does not offer the feature prints: MOV to CR4 of its bit is #GP(0) */
export const NOT_OFFERED = {
  smep: `smep: mov-cr4=${GP0}\n`,
  smap: `smap: mov-cr4=${GP0}\n`,
  stac: `stac-clac: cpl3-stac=${UD} cpl3-clac=${UD}\n`,
  umip: `umip: mov-cr4=${GP0}\n`,
} as const;
