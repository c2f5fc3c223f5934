// The device of examples/guests/custom-device.c, as a `nodevmm run --plugin` module:
//   nodevmm run examples/images/custom-device.bin --address 0x100000 --mode protected \
//     --plugin dist/examples/plugins/doubler.js
// A 32-bit OUT to the port stores an operand, an IN returns operand * 2 + 1 (mod 2^32).
// examples/custom-device.ts attaches the same class from TypeScript.
import type { NodevmmPlugin } from "../../lib/cli/plugins.js";
import type { Device } from "../../lib/index.js";

export const DOUBLER_PORT = 0x500;

export class Doubler implements Device {
  readonly name = "doubler";
  readonly ranges: Device["ranges"];
  #operand = 0;

  constructor(opts: { port?: number } = {}) {
    this.ranges = [{ space: "io", base: opts.port ?? DOUBLER_PORT, length: 4 }];
  }

  read(): number {
    return (this.#operand * 2 + 1) >>> 0;
  }

  write(_offset: number, _size: number, value: number): void {
    this.#operand = value >>> 0;
  }
}

/** Options: `port=N` (decimal or 0x hex; default 0x500). */
const plugin: NodevmmPlugin = (vm, { options }) => {
  for (const key of Object.keys(options)) {
    if (key !== "port") throw new Error(`unknown option "${key}" (doubler takes port=N)`);
  }
  let port = DOUBLER_PORT;
  if (options.port !== undefined) {
    port = Number(options.port);
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(options.port) || port > 0xfffc) {
      throw new Error(`port=${options.port} is not an I/O port 0-0xfffc (decimal or 0x hex)`);
    }
  }
  vm.addDevice(new Doubler({ port }));
};
export default plugin;
