// The two "hostage" guests (issue 9), verbatim: each once took the host hostage on the
// soft backend (limits ignored, the event loop held). Boot sectors: loaded with vm.load() or as a
// file given to `nodevmm run`.

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!, (b) => Number.parseInt(b, 16));

/** mov ax,0x1000; mov ss,ax; mov word [0],0x0b0f; ud2: #UD's handler is a UD2 (the guest) */
export const FAULT_LOOP = hex("b8 00 10 8e d0 c7 06 00 00 0f 0b 0f 0b");
/** the 212-byte real-mode guest that writes into the page it executes */
export const SMC_GUEST = hex(
  "fbc8af6964c4400606c8e00bcd66b9ff0f000066beffa0924d66bf007c0000f3ae66b90100000066beff00000066bfff000000f3a40f21f90f23ec66b8007000000f011066bc00000008cd000000009affffffff0f21dd0f23d9ff18f009f3ff1862400fc7f00fa4e233c385ca850e36660fc73188ea8462d2ce0a3574119372b37025a47f25b09c21596d62463bdbdeefd58603e26be5d9c28d7f997f986c",
);

export const HOSTAGE_GUESTS = [
  { name: "the 13-byte real-mode #UD loop", image: FAULT_LOOP },
  { name: "the 212-byte self-modifying guest", image: SMC_GUEST },
] as const;
