// lib/gdb: a GDB remote-protocol stub. `startGdbServer(vm, { port })` (or `vm.gdbServer()`) listens
// for gdb; `handle.run()` runs the guest under it.

import { MachineDebug } from "../vmm/debug.js";
import type { RunLimits, RunResult } from "../vmm/loop.js";
import type { Machine } from "../vmm/machine.js";
import { MachineGdbTarget } from "./machine-target.js";
import { GdbServer } from "./server.js";

export { MachineGdbTarget } from "./machine-target.js";
export { GdbServer, GdbServerError } from "./server.js";
export { GdbSession, PACKET_SIZE, stopReply } from "./session.js";
export { type BreakpointType, type GdbTarget, GdbTargetError, type StopEvent } from "./target.js";
export { targetXml } from "./target-xml.js";

/** Options of `vm.gdbServer()` (and startGdbServer()). */
export interface GdbServerOptions {
  /** TCP port; 0 (default) picks a free one */
  port?: number;
  /** default 127.0.0.1 */
  host?: string;
  /** stop before the first instruction until gdb resumes the guest (QEMU's -S) */
  wait?: boolean;
  /** notes about connections and protocol errors */
  log?(message: string): void;
}

/** A listening GDB stub: connect with `target remote host:port`, then run the guest with run(). */
export interface GdbServerHandle {
  /** The TCP port it listens on (the one picked when you gave 0). */
  readonly port: number;
  /** The address it listens on. */
  readonly host: string;
  /** whether a gdb is connected */
  readonly connected: boolean;
  /** resolves when a gdb connects */
  whenConnected(): Promise<void>;
  /** Runs the guest under gdb until it ends or gdb kills it (use instead of vm.run()). */
  run(limits?: RunLimits): Promise<RunResult>;
  /** Stops listening, drops the connection, removes breakpoints and the debugger's exit handlers. */
  close(): Promise<void>;
}

export async function startGdbServer(vm: Machine, opts: GdbServerOptions = {}): Promise<GdbServerHandle> {
  const debug = await MachineDebug.attach(vm);
  let server: GdbServer | undefined;
  const target = new MachineGdbTarget(vm, debug, {
    waitForGdb: opts.wait ?? false,
    connected: () => server?.connected ?? false,
  });
  try {
    server = await GdbServer.listen(target, {
      port: opts.port ?? 0,
      host: opts.host ?? "127.0.0.1",
      ...(opts.log ? { log: opts.log } : {}),
    });
  } catch (e) {
    debug.close();
    throw e;
  }
  const s = server;
  target.notify = (ev) => s.stopped(ev);
  return {
    port: s.port,
    host: s.host,
    get connected() {
      return s.connected;
    },
    whenConnected: () => s.whenConnected(),
    run: (limits) => target.run(limits),
    close: async () => {
      await s.close();
      // a run waiting for gdb goes on by itself, as after a detach
      await target.close();
    },
  };
}
