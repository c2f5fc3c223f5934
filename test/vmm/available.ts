// Which real backends this host and checkout can run, with the reason when one cannot.

import { accessSync, constants, existsSync } from "node:fs";
import { join } from "node:path";

export const backendsDir = join(import.meta.dirname, "..", "..", "lib", "vmm", "backends");

export function unavailable(kind: "kvm" | "soft"): string | undefined {
  if (!existsSync(join(backendsDir, `${kind}.ts`))) return `lib/vmm/backends/${kind}.ts is not there`;
  if (kind === "kvm") {
    try {
      accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    } catch {
      return "/dev/kvm is not usable";
    }
  }
  return undefined;
}
