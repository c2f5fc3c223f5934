// `nodevmm run --smp N --vcpu-threads T`: the soft vCPUs on T worker threads (createMachine's
// vcpuThreads), moving between them when T < N, through the real bin/nodevmm.js; bad counts and
// the combinations it cannot serve are usage errors (status 2).

import { describe, expect, it } from "vitest";
import { expectedSmp, SMP_IMAGE_PATH, smpCmdline } from "../support/smp-guest.js";
import { backendMissing, nodevmm } from "./helpers.js";

const skipReason = backendMissing("soft");

describe.skipIf(skipReason !== undefined)(
  `nodevmm run --vcpu-threads${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    const run = ["run", SMP_IMAGE_PATH, "--backend", "soft", "--timeout", "60"];

    it("runs 4 vCPUs on 2 threads to the guest's exact result", () => {
      const r = nodevmm([
        ...run,
        "--smp",
        "4",
        "--vcpu-threads",
        "2",
        "--cmdline",
        smpCmdline("xadd", 20_000),
      ]);
      const want = expectedSmp("xadd", 4, 20_000);
      expect(r.stdout).toBe(want.out);
      expect(r.status, r.stderr).toBe((want.value << 1) | 1);
    });

    it("refuses a count that is not 1-64, KVM, --deterministic and --gdb with fewer threads than vCPUs", () => {
      for (const [args, message] of [
        [["--vcpu-threads", "0"], "--vcpu-threads takes 1-64"],
        [["--vcpu-threads", "x"], "--vcpu-threads"],
        [
          ["--smp", "2", "--vcpu-threads", "1", "--deterministic"],
          "--vcpu-threads cannot be used with --deterministic",
        ],
        [["--smp", "2", "--vcpu-threads", "1", "--gdb", "1234"], "--gdb needs a thread per vCPU"],
      ] as const) {
        const r = nodevmm([...run, ...args]);
        expect(r.status, r.stderr).toBe(2);
        expect(r.stderr).toContain(message);
      }
      const kvm = nodevmm(["run", SMP_IMAGE_PATH, "--backend", "kvm", "--vcpu-threads", "2"]);
      expect(kvm.status, kvm.stderr).toBe(2);
      expect(kvm.stderr).toContain("--vcpu-threads is for the soft backend");
    });
  },
);
