// `nodevmm info` names the KVM binding in use and why (issue 14), as text and in --json.

import { describe, expect, it } from "vitest";
import { availableBindings, describeBinding } from "../../lib/kvm/binding.js";
import { distMissing, nodevmm } from "./helpers.js";

const available = availableBindings();

describe.skipIf(distMissing !== undefined)(
  `nodevmm info: the binding${distMissing ? ` (skipped: ${distMissing})` : ""}`,
  () => {
    it("names the binding loadBinding() picks here, with the reason", () => {
      const text = nodevmm(["info"], { env: { NODEVMM_BINDING: "" } });
      expect(text.status).toBe(0);
      const want = available.includes("addon") ? "addon" : "koffi";
      const line = text.stdout.match(/^binding: (\S+) \((.+)\)$/m);
      expect(line?.[1]).toBe(want);
      expect(line?.[2]).toMatch(
        want === "addon" ? /native addon at .*nodevmm\.node/ : /no native addon|did not load/,
      );
      const json = JSON.parse(nodevmm(["info", "--json"], { env: { NODEVMM_BINDING: "" } }).stdout) as {
        binding: { kind: string; reason: string };
      };
      expect(json.binding.kind).toBe(want);
    });

    it.skipIf(!available.includes("koffi"))("says so when NODEVMM_BINDING chose it", () => {
      const text = nodevmm(["info"], { env: { NODEVMM_BINDING: "koffi" } });
      expect(text.stdout).toMatch(/^binding: koffi \(NODEVMM_BINDING=koffi\)$/m);
    });

    it("describeBinding() agrees with what loads in this process", () => {
      const d = describeBinding();
      expect(d.kind).toBe(process.env.NODEVMM_BINDING || (available.includes("addon") ? "addon" : "koffi"));
      expect(d.reason.length).toBeGreaterThan(0);
    });
  },
);
