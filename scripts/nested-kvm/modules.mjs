// Kernel-module bookkeeping for the guest: which .ko files to pack and in which order to insmod them,
// computed from the modules.dep that depmod writes (busybox insmod knows no dependencies).

/**
 * The modules the guests need. The nested-KVM guest: 9p for the host's root and the share, overlay for
 * a writable root, KVM. The Linux lane's guest (scripts/linux-lane): the virtio-mmio transport and the
 * block, console and entropy devices nodevmm offers.
 */
export const NESTED_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "kvm_amd"];
export const LINUX_LANE_MODULES = ["virtio_mmio", "virtio_blk", "virtio_console", "virtio_rng"];
/** one kernel cache serves both lanes */
export const WANTED_MODULES = [...NESTED_MODULES, ...LINUX_LANE_MODULES];

/** "kernel/arch/x86/kvm/kvm-amd.ko.xz" -> "kvm_amd" (modprobe treats "-" and "_" alike). */
export function moduleName(path) {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|gz|zst))?$/, "").replaceAll("-", "_");
}

/**
 * Parses modules.dep ("path: dep dep ...") into a Map from module name to `{ path, deps }`, deps being
 * module names.
 */
export function parseModulesDep(text) {
  const map = new Map();
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon <= 0)
      throw new Error(`modules.dep line ${i + 1}: expected "path: deps", got ${JSON.stringify(line)}`);
    const path = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(moduleName);
    map.set(moduleName(path), { path, deps });
  }
  return map;
}

/** Names of modules compiled into the kernel, from modules.builtin (one path per line). */
export function parseModulesBuiltin(text) {
  return new Set(
    text
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean)
      .map(moduleName),
  );
}

/**
 * Orders `wanted` and everything they depend on so that each module comes after its dependencies,
 * keeping `wanted`'s order otherwise. Built-in modules are skipped. Throws naming the module when one is
 * neither in modules.dep nor built in, or when dependencies form a cycle.
 * @returns {{ name: string, path: string }[]}
 */
export function resolveLoadOrder(dep, builtin, wanted) {
  const order = [];
  const done = new Set();
  const visiting = new Set();
  const visit = (raw, chain) => {
    const name = raw.replaceAll("-", "_");
    if (done.has(name)) return;
    if (visiting.has(name))
      throw new Error(`kernel modules: dependency cycle ${[...chain, name].join(" -> ")}`);
    const entry = dep.get(name);
    if (!entry) {
      if (builtin.has(name)) {
        done.add(name);
        return;
      }
      const via = chain.length ? ` (needed by ${chain.join(" -> ")})` : "";
      throw new Error(`kernel module "${name}"${via} is neither in modules.dep nor built into the kernel`);
    }
    visiting.add(name);
    for (const d of entry.deps) visit(d, [...chain, name]);
    visiting.delete(name);
    done.add(name);
    order.push({ name, path: entry.path });
  };
  for (const w of wanted) visit(w, []);
  return order;
}
