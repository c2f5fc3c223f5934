// A multiboot kernel run by `nodevmm run` sees its image path first on its command line, as GRUB and
// QEMU -kernel pass it (examples/images/multiboot-info.elf prints the command line it got).
import { describe, expect, it } from "vitest";
import { backendMissing, nodevmm } from "./helpers.js";

const why = backendMissing("soft");
const image = "examples/images/multiboot-info.elf";

describe.skipIf(why !== undefined)(
  `nodevmm run of a multiboot kernel${why ? ` (skipped: ${why})` : ""}`,
  () => {
    it("passes the image path, then the --cmdline text", () => {
      const r = nodevmm(["run", image, "--cmdline", "a=1 b=2", "--backend", "soft", "--timeout", "30"]);
      expect(r.stdout).toContain(`cmdline "${image} a=1 b=2"\n`);
      expect(r.status).toBe(0);
    });

    it("passes the image path alone without a command line", () => {
      const r = nodevmm(["run", image, "--backend", "soft", "--timeout", "30"]);
      expect(r.stdout).toContain(`cmdline "${image}"\n`);
      expect(r.status).toBe(0);
    });
  },
);
