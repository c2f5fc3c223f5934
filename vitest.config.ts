import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // test/kvm needs a real /dev/kvm; it skips itself with a visible reason elsewhere.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
});
