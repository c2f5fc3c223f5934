// Is /dev/kvm usable here? Opens it read-write and, when koffi can reach libc, asks KVM_GET_API_VERSION.
// Run directly (`node scripts/nested-kvm/kvm-probe.mjs`) it prints the result as JSON and exits 0 only
// when KVM is usable: the nested lane uses it as a guest-side smoke test.
import { closeSync, openSync } from "node:fs";
import { fileURLToPath } from "node:url";

const KVM_GET_API_VERSION = 0xae00; // _IO(KVMIO=0xAE, 0x00)
export const KVM_API_VERSION = 12;

/** @returns {Promise<{ usable: boolean, reason: string, apiVersion?: number }>} */
export async function probeKvm(path = "/dev/kvm") {
  let fd;
  try {
    fd = openSync(path, "r+");
  } catch (e) {
    const code = /** @type {NodeJS.ErrnoException} */ (e).code;
    return {
      usable: false,
      reason: code === "ENOENT" ? `${path} is missing` : `cannot open ${path}: ${code}`,
    };
  }
  try {
    let ioctl;
    try {
      const koffi = (await import("koffi")).default;
      ioctl = koffi.load("libc.so.6").func("int ioctl(int fd, unsigned long request, ...)");
    } catch {
      // koffi is only a shortcut for the version check; an openable /dev/kvm is good enough without it.
      return {
        usable: true,
        reason: `${path} opens read-write (API version not checked: koffi unavailable)`,
      };
    }
    const v = ioctl(fd, KVM_GET_API_VERSION, "int", 0);
    if (v !== KVM_API_VERSION) {
      return {
        usable: false,
        reason: `${path}: KVM_GET_API_VERSION returned ${v}, expected 12`,
        apiVersion: v,
      };
    }
    return { usable: true, reason: `${path} opens read-write, API version 12`, apiVersion: v };
  } finally {
    closeSync(fd);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await probeKvm(process.argv[2]);
  console.log(JSON.stringify(r));
  process.exitCode = r.usable ? 0 : 1;
}
