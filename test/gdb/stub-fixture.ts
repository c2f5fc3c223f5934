// What the gdb suites share around the stub: a machine served to gdb for one test and closed after
// it (with its stub) whatever the test did, and the reads a protocol client makes most.

import { afterEach } from "vitest";
import { parseLeHex } from "../../lib/gdb/hex.js";
import type { GdbServerHandle } from "../../lib/gdb/index.js";
import { REGISTER_INDEX } from "../../lib/gdb/registers.js";
import type { Machine, RunResult } from "../../lib/index.js";
import type { Client } from "./client.js";

/**
 * Registers the clean-up of the suite (call at its top level); serve(vm) starts the stub on `vm`
 * with the guest waiting for gdb (port chosen by the system) and the run going.
 */
export function stubFixture(): {
  serve(vm: Machine, timeoutMs?: number): Promise<{ stub: GdbServerHandle; run: Promise<RunResult> }>;
} {
  let vm: Machine | undefined;
  let stub: GdbServerHandle | undefined;
  afterEach(async () => {
    await stub?.close();
    vm?.close();
    vm = undefined;
    stub = undefined;
  });
  return {
    async serve(machine, timeoutMs = 120_000) {
      vm = machine;
      stub = await machine.gdbServer({ port: 0, wait: true });
      return { stub, run: stub.run({ timeoutMs }) };
    },
  };
}

export const hex = (n: bigint): string => n.toString(16);

/** register `name` as the client reads it with `p` */
export const reg = async (c: Client, name: string): Promise<bigint> =>
  parseLeHex(await c.ask(`p${REGISTER_INDEX.get(name)!.toString(16)}`))!;
