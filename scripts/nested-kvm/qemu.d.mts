export function qemuArgs(opts: {
  vmlinuz: string;
  initrd: string;
  shareDir: string;
  consoleLog: string;
  memory?: string;
  smp?: number;
  cpu?: string;
}): string[];
export function runGuest(opts: {
  qemu: string;
  args: string[];
  shareDir: string;
  consoleLog: string;
  timeoutMs: number;
  onOutput: (buf: Buffer) => void;
  onConsole?: (text: string) => void;
  /** How long QEMU gets to exit after SIGTERM on timeout before SIGKILL (default 3000 ms). */
  killGraceMs?: number;
}): Promise<{
  rc: number | null;
  timedOut: boolean;
  qemuExit: { code: number | null; signal: string | null };
  qemuStderr: string;
  consoleText: string;
  output: string;
  stages: Map<string, number>;
  fail: string | null;
  startedAt: number;
  endedAt: number;
}>;
