// Setup file of the "single-step" vitest project (vitest.config.ts): every interpreter the suites
// create, the soft backend's own included, starts with the block cache off, so the same VMX, exit
// and soft-backend tests that run with compiled blocks run again one instruction at a time.
// test/vmx/mode.test.ts checks that this took effect (and that the other project compiles blocks).
import { Interpreter } from "../../lib/cpu/interpreter.js";

if (process.env.NODEVMM_SINGLE_STEP === "1") Interpreter.defaultDecodeCache = false;
