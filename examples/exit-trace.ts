// Every VM exit, as the loop sees it, on either backend: `node dist/examples/exit-trace.js [soft|kvm]`.
// On the soft backend each line also carries the VMX exit reason, qualification and instruction length.

import { exampleImage } from "../lib/examples/index.js";
import { type BackendRequest, createMachine, formatExit } from "../lib/index.js";

const backend = (process.argv[2] ?? "auto") as BackendRequest;
const vm = await createMachine({ memoryMiB: 64, backend });
vm.io.onOut(0x3f8, () => {}, 8); // swallow the UART's bytes: this example shows exits, not output
vm.on("exit", (exit, info) => {
  console.log(formatExit(exit, { index: info.index, rip: vm.vcpu(info.vcpu).getRegs().rip }));
});
const guest = exampleImage("real-hello"); // what `import { exampleImage } from "nodevmm/examples"` gives
vm.load(guest.read(), guest.loadOptions);
const result = await vm.run({ timeoutMs: 10_000, maxExits: 200 });
console.log(`[${vm.backendInfo.kind}] ${result.reason} after ${result.exits} exits`);
vm.close();
