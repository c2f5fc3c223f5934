// Builds dist/ once before any suite runs: the suites that spawn the compiled project would
// otherwise each rebuild a stale dist/ at the same time and start binaries on half-written files.
import { ensureDist } from "./dist.js";

export default function setup(): void {
  ensureDist("dist/lib/cli/main.js", ["lib", "examples", "bench"]);
}
