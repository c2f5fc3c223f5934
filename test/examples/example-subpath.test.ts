// The `nodevmm/examples` subpath (lib/examples/index.ts): it lists what examples/images/manifest.json
// lists, hands out the image bytes and expected output, and its loadOptions boot each guest that needs
// nothing but the PC devices to the manifest's output on the soft backend.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { exampleImage, exampleImages } from "../../lib/examples/index.js";
import { addPcDevices, createMachine, InvalidArgumentError } from "../../lib/index.js";
import { expected, image, manifest } from "./paths.js";

describe("nodevmm/examples", () => {
  it("lists the manifest's images, with their bytes and expected output", () => {
    expect(exampleImages().map((e) => e.name)).toEqual(manifest.map((m) => m.name));
    for (const m of manifest) {
      const e = exampleImage(m.name);
      expect(e.read()).toEqual(new Uint8Array(image(m)));
      expect(readFileSync(e.path)).toEqual(Buffer.from(image(m)));
      expect(e.expectedOutput()).toBe(expected(m));
      expect(e.loadOptions.format).toBe(m.format);
      expect(e.memoryMiB).toBe(m.memoryMiB);
      // the guests that need a device or hypercall handler from examples/plugins say so
      expect(e.needs !== undefined).toBe((m.plugins ?? []).length > 0);
    }
  });

  it("refuses an unknown name with InvalidArgumentError listing the names", () => {
    expect(() => exampleImage("no-such-guest")).toThrow(InvalidArgumentError);
    expect(() => exampleImage("no-such-guest")).toThrow(/real-hello/);
    expect(() => exampleImage(undefined as unknown as string)).toThrow(InvalidArgumentError);
  });

  const standalone = exampleImages().filter((e) => e.needs === undefined);
  it.each(standalone.map((e) => [e.name, e] as const))(
    "%s boots from its loadOptions to the manifest's output",
    async (_name, e) => {
      const vm = await createMachine({ memoryMiB: e.memoryMiB, backend: "soft" });
      try {
        let out = "";
        addPcDevices(vm, {
          serial: {
            write: (b: Uint8Array) => {
              out += Buffer.from(b).toString("latin1");
              return true;
            },
          },
        });
        vm.load(e.read(), e.loadOptions);
        const result = await vm.run({ timeoutMs: 60_000 });
        expect(result.reason).toBe(e.stop);
        if (e.stop === "debug-exit") expect(result.exitCode).toBe(((e.debugExitValue ?? 0) << 1) | 1);
        expect(out).toBe(e.expectedOutput());
      } finally {
        vm.close();
      }
    },
    90_000,
  );
});
