// The package version for `nodevmm --version`: package.json sits at the repository/package root,
// two folders above lib/cli when run from source and three above dist/lib/cli when compiled.

import { readFileSync } from "node:fs";

export function packageVersion(): string {
  for (const rel of ["../../package.json", "../../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "nodevmm" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not at this depth
    }
  }
  return "unknown";
}
