// Installs missing Debian packages for a benchmark or test lane, the way the nested-KVM lane does
// (scripts/nested-kvm/host-tools.mjs): when a tool is not on PATH and we are root, `apt-get update`
// then `apt-get install --no-install-recommends`; otherwise say what to run.
//
//   node scripts/ensure-packages.mjs TOOL=PACKAGE...      e.g. qemu-system-x86_64=qemu-system-x86
//
// Exit status 0 when every tool is on PATH afterwards, 1 otherwise (the reason on stderr). apt's own
// output goes to stderr, so that a caller's stdout (a benchmark's table) stays clean.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { which } from "./nested-kvm/exec.mjs";

const APT_ENV = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
// Other apt users (unattended upgrades, a parallel job) hold the lock for a while: wait, do not fail.
const APT_LOCK = ["-o", "DPkg::Lock::Timeout=300"];

function apt(args) {
  const r = spawnSync("apt-get", [...APT_LOCK, ...args], { env: APT_ENV, stdio: ["ignore", 2, 2] });
  if (r.error) return `apt-get: ${r.error.message}`;
  if (r.status !== 0) return `\`apt-get ${args.join(" ")}\` failed (${r.signal ?? `exit code ${r.status}`})`;
  return undefined;
}

/**
 * @param {Record<string, string>} wanted tool name -> Debian package that provides it
 * @param {(msg: string) => void} log
 * @returns {{ ok: true } | { ok: false, reason: string }}
 */
export function ensurePackages(wanted, log) {
  const missing = () => [...new Set(Object.entries(wanted).flatMap(([t, p]) => (which(t) ? [] : [p])))];
  const packages = missing();
  if (packages.length === 0) return { ok: true };
  const cmd = `apt-get install ${packages.join(" ")}`;
  if (!which("apt-get")) return { ok: false, reason: `missing ${packages.join(", ")} and no apt-get` };
  if (process.getuid?.() !== 0)
    return { ok: false, reason: `missing ${packages.join(", ")}: run \`${cmd}\`` };
  log("apt-get update");
  const updated = apt(["update", "-q"]);
  if (updated) return { ok: false, reason: updated };
  log(cmd);
  const installed = apt(["install", "-y", "-q", "--no-install-recommends", ...packages]);
  if (installed) return { ok: false, reason: installed };
  const still = missing();
  return still.length
    ? { ok: false, reason: `still missing after apt-get: ${still.join(", ")}` }
    : { ok: true };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wanted = {};
  for (const a of process.argv.slice(2)) {
    const [tool, pkg] = a.split("=");
    if (!tool || !pkg) {
      console.error(`ensure-packages: expected TOOL=PACKAGE, got ${JSON.stringify(a)}`);
      process.exit(2);
    }
    wanted[tool] = pkg;
  }
  const r = ensurePackages(wanted, (m) => console.error(`ensure-packages: ${m}`));
  if (!r.ok) console.error(`ensure-packages: ${r.reason}`);
  process.exit(r.ok ? 0 : 1);
}
