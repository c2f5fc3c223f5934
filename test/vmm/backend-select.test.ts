// Backend selection: "auto" takes KVM when it opens, and otherwise says why it fell back.

import { describe, expect, it } from "vitest";
import { type BackendOpeners, openBackend } from "../../lib/vmm/backend-select.js";
import { BackendUnavailableError, MachineConfigError } from "../../lib/vmm/errors.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { unavailable } from "./available.js";
import { FakeBackend } from "./fake-backend.js";

const deny = (kind: "kvm" | "soft", why: string) => async () => {
  throw new BackendUnavailableError(why, kind);
};
const opts = { memoryBytes: 1 << 20 };

describe("openBackend", () => {
  it('"auto" uses KVM when it opens', async () => {
    const openers: BackendOpeners = {
      kvm: async () => new FakeBackend([], { kind: "kvm" }),
      soft: deny("soft", "must not be asked"),
    };
    const { backend, info } = await openBackend("auto", opts, openers);
    expect(backend.kind).toBe("kvm");
    expect(info).toEqual({ kind: "kvm", requested: "auto", message: "kvm" });
  });

  it('"auto" falls back to soft and records why KVM was not used', async () => {
    const openers: BackendOpeners = {
      kvm: deny("kvm", "KVM unavailable: /dev/kvm: permission denied (EACCES)"),
      soft: async () => new FakeBackend([], { kind: "soft" }),
    };
    const { backend, info } = await openBackend("auto", opts, openers);
    expect(backend.kind).toBe("soft");
    expect(info.fallbackReason).toBe("KVM unavailable: /dev/kvm: permission denied (EACCES)");
    expect(info.message).toBe("soft (KVM unavailable: /dev/kvm: permission denied (EACCES))");
  });

  it("with neither backend, the error names both reasons", async () => {
    const openers: BackendOpeners = {
      kvm: deny("kvm", "KVM unavailable: no /dev/kvm"),
      soft: deny("soft", "the soft backend module failed to load (module not found)"),
    };
    const e = await openBackend("auto", opts, openers).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BackendUnavailableError);
    expect((e as Error).message).toMatch(/no \/dev\/kvm.*module not found/);
  });

  it('an explicit "kvm" does not fall back; a bad request is a config error', async () => {
    const openers: BackendOpeners = {
      kvm: deny("kvm", "KVM unavailable: no /dev/kvm"),
      soft: async () => new FakeBackend([], { kind: "soft" }),
    };
    await expect(openBackend("kvm", opts, openers)).rejects.toThrow(/no \/dev\/kvm/);
    await expect(openBackend("qemu" as "kvm", opts, openers)).rejects.toThrow(MachineConfigError);
  });

  it("on this host, auto picks KVM exactly when KVM is usable", async () => {
    const vm = await createMachine({ memoryMiB: 4, backend: "auto" });
    try {
      const kvmWhy = unavailable("kvm");
      if (kvmWhy === undefined) {
        expect(vm.backendInfo.kind).toBe("kvm");
      } else {
        expect(vm.backendInfo.kind).toBe("soft");
        expect(vm.backendInfo.fallbackReason).toMatch(/\S/);
      }
    } finally {
      vm.close();
    }
  });
});
