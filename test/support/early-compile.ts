// Setup file of the "blocks" vitest project (vitest.config.ts): interpreters compile a block to a
// JavaScript function after 16 runs instead of the 20,000 users run with (COMPILE_THRESHOLD), so
// that the short guests of the suites run interpreted blocks, the switch to compiled ones, and
// compiled blocks, all held to single-stepping's exits and state. What a block computes does not
// depend on when it is compiled; only the speed does (bench/linux-boot).
// test/vmx/mode.test.ts checks that this took effect.
import { Interpreter } from "../../lib/cpu/interpreter.js";

Interpreter.defaultJitThreshold = 16;
