// The helper threads (vCPU thread, watchdog) report "ready" once they have loaded the addon; a
// thread that never does must become an error the machine can turn into a warning, not a hang.

/** Resolves as `ready` does, or rejects naming `what` after `ms` milliseconds. */
export async function startedWithin(ready: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not start within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
