// Builds dist/ once before any suite runs: the suites that spawn the compiled project would
// otherwise each rebuild a stale dist/ at the same time and start binaries on half-written files.
// The CLI bundle follows tsc's output, so that the suites spawning bin/nodevmm.js run what users run.
import { ensureCliBundle, ensureDist } from "./dist.js";

export default function setup(): void {
  if (ensureDist("dist/lib/cli/main.js", ["lib", "examples", "bench"]) === undefined) ensureCliBundle();
}
