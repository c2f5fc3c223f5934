import { configDefaults, defineConfig } from "vitest/config";

/**
 * Three projects (the third, "vcpu-thread", below): "blocks" runs every suite as users run the interpreter (block cache and compiled
 * blocks on; blocks compile after 16 runs rather than 20,000, test/support/early-compile.ts); "single-step" runs the VMX, exit and soft-backend suites again with
 * Interpreter.defaultDecodeCache = false (test/support/single-step.ts; test/vmx/mode.test.ts checks
 * it took effect), so that blocks and single steps are held to the same exits and state. Not run
 * twice: suites that drive the VMX layer with a fake CPU, spawn the CLI (the child process would not
 * see the setting), choose the mode per interpreter themselves, or bound wall time.
 */
const SINGLE_STEP_INCLUDE = [
  "test/vmx/**/*.test.ts",
  "test/soft/**/*.test.ts",
  "test/vmm/{backends,guest-runs,machine}.test.ts",
  // the interpreter asking the VMX hooks about a guest's VMX instructions
  "test/cpu/vmx-instructions.test.ts",
];
const SINGLE_STEP_EXCLUDE = [
  // drive the VMX layer with test/vmx/fake-cpu.ts, not the interpreter: nothing to switch
  "test/vmx/{entry,entry-cache,exits,fields,guest-linear,instructions}.test.ts",
  // spawn bin/nodevmm.js
  "test/soft/{cli-trace,bounded-cli}.test.ts",
  // sets decodeCache per interpreter itself (both modes in one run)
  "test/vmx/blocks-vs-single-step.test.ts",
  // wall-time bounds of the mode users run
  "test/soft/bounded.test.ts",
  "test/soft/shared-thread.test.ts",
];

/**
 * "vcpu-thread": suites whose soft machines run again with their vCPU in a worker thread
 * (NODEVMM_VCPU_THREAD=1 makes vcpuThread default to true on the soft backend): the same guests,
 * exits and output as on the machine's thread. Not deterministic runs or SMP, which keep the vCPUs
 * on the machine's thread, nor the debugger's suites, which run each case both ways themselves.
 */
const VCPU_THREAD_INCLUDE = [
  "test/soft/{apic-guests,mmio-complete,cr-access,task-switch,tsc,acpi-power,kvm-suite,shared-thread}.test.ts",
  "test/snapshot/*.test.ts",
  "test/vmm/{guest-runs,machine,virtio,differential,backends,api-validation}.test.ts",
];

/**
 * "shared-memory": the interpreter's suites again with every interpreter in the mode of several
 * vCPU threads over one guest memory (test/support/shared-memory-mode.ts: locked operations by
 * compare-and-swap, single-copy atomic accesses, the code-coherence protocol), held to the same
 * results. Not the suites that make their own threads or modes, nor the host-CPU oracles.
 */
const SHARED_MEMORY_INCLUDE = ["test/cpu/**/*.test.ts"];
const SHARED_MEMORY_EXCLUDE = [
  "test/cpu/smp-*.test.ts",
  "test/cpu/differential*.test.ts",
  "test/cpu/mmx-differential.test.ts",
];

export default defineConfig({
  test: {
    // test/kvm needs a real /dev/kvm; it skips itself with a visible reason elsewhere.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "blocks",
          include: ["test/**/*.test.ts"],
          // minutes per boot: `npm run test:linux` (vitest.linux.config.ts)
          exclude: [...configDefaults.exclude, "test/linux/**"],
          globalSetup: ["test/support/global-setup.ts"],
          // blocks compile after 16 runs here, not 20,000, so that short guests run compiled code
          setupFiles: ["test/support/early-compile.ts"],
        },
      },
      {
        extends: true,
        test: {
          name: "single-step",
          include: SINGLE_STEP_INCLUDE,
          exclude: [...configDefaults.exclude, ...SINGLE_STEP_EXCLUDE],
          env: { NODEVMM_SINGLE_STEP: "1" },
          setupFiles: ["test/support/single-step.ts"],
        },
      },
      {
        extends: true,
        test: {
          name: "shared-memory",
          include: SHARED_MEMORY_INCLUDE,
          exclude: [...configDefaults.exclude, ...SHARED_MEMORY_EXCLUDE],
          env: { NODEVMM_SHARED_MEMORY: "1" },
          setupFiles: ["test/support/early-compile.ts", "test/support/shared-memory-mode.ts"],
        },
      },
      {
        extends: true,
        test: {
          name: "vcpu-thread",
          include: VCPU_THREAD_INCLUDE,
          env: { NODEVMM_VCPU_THREAD: "1" },
        },
      },
    ],
  },
});
