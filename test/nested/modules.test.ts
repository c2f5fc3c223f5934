import { describe, expect, it } from "vitest";
import {
  moduleName,
  NESTED_MODULES,
  parseModulesBuiltin,
  parseModulesDep,
  resolveLoadOrder,
} from "../../scripts/nested-kvm/modules.mjs";

// Shaped like depmod's output for Debian 6.1 (deps listed nearest first, as depmod writes them).
const DEP = `
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm-amd.ko: kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko kernel/drivers/crypto/ccp/ccp.ko
kernel/virt/lib/irqbypass.ko:
kernel/drivers/crypto/ccp/ccp.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko
kernel/net/9p/9pnet.ko:
kernel/fs/9p/9p.ko: kernel/fs/netfs/netfs.ko kernel/fs/fscache/fscache.ko kernel/net/9p/9pnet.ko
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/overlayfs/overlay.ko.xz:
`;
const BUILTIN = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n";

describe("kernel module load order", () => {
  const dep = parseModulesDep(DEP);
  const builtin = parseModulesBuiltin(BUILTIN);

  it("normalizes module names like modprobe", () => {
    expect(moduleName("kernel/arch/x86/kvm/kvm-amd.ko")).toBe("kvm_amd");
    expect(moduleName("kernel/fs/overlayfs/overlay.ko.xz")).toBe("overlay");
    expect(moduleName("a/b/9pnet_virtio.ko.zst")).toBe("9pnet_virtio");
  });

  it("parses paths and dependencies", () => {
    expect(dep.get("kvm_amd")).toEqual({
      path: "kernel/arch/x86/kvm/kvm-amd.ko",
      deps: ["kvm", "irqbypass", "ccp"],
    });
    expect(dep.get("irqbypass")!.deps).toEqual([]);
    expect(builtin.has("virtio_ring")).toBe(true);
  });

  it("puts every module after its dependencies and skips built-ins", () => {
    // the nested lane's modules (the fixture's modules.dep has those)
    const order = resolveLoadOrder(dep, builtin, NESTED_MODULES).map((m) => m.name);
    for (const w of NESTED_MODULES) expect(order).toContain(w);
    for (const [i, name] of order.entries()) {
      for (const d of dep.get(name)!.deps) expect(order.indexOf(d), `${d} before ${name}`).toBeLessThan(i);
    }
    expect(new Set(order).size).toBe(order.length);
    expect(order).not.toContain("virtio");
    expect(order.at(-1)).toBe("kvm_amd");
  });

  it("accepts hyphenated requests", () => {
    expect(resolveLoadOrder(dep, builtin, ["kvm-amd"]).map((m) => m.name)).toEqual([
      "irqbypass",
      "kvm",
      "ccp",
      "kvm_amd",
    ]);
  });

  it("names a module that is missing, and who needed it", () => {
    const broken = parseModulesDep("kernel/a.ko: kernel/b.ko\n");
    expect(() => resolveLoadOrder(broken, new Set(), ["a"])).toThrow(
      /"b" \(needed by a\) is neither in modules.dep/,
    );
    expect(() => resolveLoadOrder(dep, builtin, ["kvm_intel"])).toThrow(/kernel module "kvm_intel"/);
  });

  it("reports dependency cycles", () => {
    const cyclic = parseModulesDep("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n");
    expect(() => resolveLoadOrder(cyclic, new Set(), ["a"])).toThrow(/cycle a -> b -> a/);
  });

  it("rejects malformed modules.dep lines", () => {
    expect(() => parseModulesDep("no colon here\n")).toThrow(/line 1/);
  });
});
