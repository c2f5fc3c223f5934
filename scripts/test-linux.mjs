// `npm run test:linux`: boots Debian's kernel with a busybox initramfs on the soft backend and checks
// what its /init reports (test/linux). Fetches the kernel and busybox on first use into .cache/ (the
// nested-KVM lane's cache), then runs vitest with vitest.linux.config.ts, handing the paths over in
// NODEVMM_LINUX_KERNEL and NODEVMM_LINUX_INITRD. Extra arguments go to vitest.
// Exit code: vitest's, or 2 when the lane itself failed (the guest could not be had).
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureLinuxGuest } from "./linux-lane/guest.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const log = (msg) => console.error(`test:linux: ${msg}`);

let guest;
try {
  guest = ensureLinuxGuest(log);
} catch (e) {
  log(`could not prepare the guest: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}
log(`kernel ${guest.release}: ${guest.kernel}`);
log(`initramfs: ${guest.initrd}`);
const vitest = join(REPO, "node_modules", "vitest", "vitest.mjs");
const r = spawnSync(
  process.execPath,
  [vitest, "run", "--config", "vitest.linux.config.ts", ...process.argv.slice(2)],
  {
    cwd: REPO,
    stdio: "inherit",
    env: { ...process.env, NODEVMM_LINUX_KERNEL: guest.kernel, NODEVMM_LINUX_INITRD: guest.initrd },
  },
);
process.exit(r.status ?? 2);
