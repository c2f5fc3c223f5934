import { defineConfig } from "vitest/config";

/**
 * The Linux lane (`npm run test:linux`, scripts/test-linux.mjs): boots a real kernel, minutes per
 * boot on the soft backend, so it is kept out of `npm test` and runs its files one at a time.
 */
export default defineConfig({
  test: {
    include: ["test/linux/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30 * 60_000,
    hookTimeout: 10 * 60_000,
    pool: "forks",
    fileParallelism: false,
  },
});
