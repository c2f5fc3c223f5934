// The SMEP/SMAP/UMIP guest (test/soft/guests/access-rights.S) on KVM, the reference for what the
// soft backend prints (test/soft/access-rights.test.ts). The guest tests a feature only where
// CPUID.7.0 offers it, and otherwise checks that MOV to CR4 of its bit is #GP(0): so on a host that
// offers all three the whole output must equal the soft backend's, and on one that offers fewer
// (the nested lane's default qemu64 CPU offers none; .ci/run runs this file again on QEMU's "max" CPU,
// which offers all three) the lines of the missing ones must say CR4 refused
// them. What was not compared is printed.

import { describe, expect, it } from "vitest";
import { type Bits, EXPECTED, NOT_OFFERED, runAccessRights } from "../support/access-rights-guest.js";
import { probe, skipReason } from "./helpers.js";

const bit = (out: string, name: string): boolean =>
  new RegExp(`${name}=00000001`).test(out.split("\n")[0] ?? "");

describe.skipIf(!probe.usable)(`the SMEP/SMAP/UMIP guest on KVM${skipReason}`, () => {
  for (const bits of [32, 64] as const satisfies readonly Bits[]) {
    it(`${bits}-bit: prints what the soft backend prints for every feature the host's CPUID offers`, async () => {
      const { out, result } = await runAccessRights(bits, "kvm");
      expect(result.reason, result.message).toBe("hlt");
      const smep = bit(out, "smep");
      const smap = bit(out, "smap");
      const umip = bit(out, "umip");
      const missing = [!smep && "SMEP", !smap && "SMAP (and STAC/CLAC)", !umip && "UMIP"].filter(Boolean);
      if (missing.length > 0) {
        console.warn(
          `test/kvm/access-rights: KVM's CPUID does not offer ${missing.join(", ")}: only CR4's refusal is compared for them`,
        );
      }
      const h = (b: boolean) => (b ? "00000001" : "00000000");
      const expected =
        `cpuid.7.0: smep=${h(smep)} smap=${h(smap)} umip=${h(umip)}\n` +
        (smep ? EXPECTED.smep : NOT_OFFERED.smep) +
        (smap ? EXPECTED.smap : NOT_OFFERED.smap) +
        (smap ? EXPECTED.stac : NOT_OFFERED.stac) +
        (umip ? EXPECTED.umip : NOT_OFFERED.umip) +
        EXPECTED.done;
      expect(out).toBe(expected);
    });
  }
});
