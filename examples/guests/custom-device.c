/* Talks to a device the TypeScript side defines at I/O port 0x500: a 32-bit OUT sets an operand, a
 * 32-bit IN returns operand * 2 + 1 (mod 2^32). Prints each exchange and a verdict, then halts.
 * Flat binary for 32-bit protected mode at 0x100000. Expected output: custom-device.expected (with
 * no device there the reads give all-ones and the verdict line says so). */
#include "guest.h"

#define DEVICE 0x500

int main(void);

static const u32 operands[] = {0, 1, 21, 1000, 123456789};

int main(void) {
  u32 wrong = 0;
  for (u32 i = 0; i < sizeof operands / sizeof operands[0]; i++) {
    u32 v = operands[i];
    outl(DEVICE, v);
    u32 r = inl(DEVICE);
    put_str("device(");
    put_dec(v);
    put_str(") = ");
    put_dec(r);
    put_char('\n');
    if (r != v * 2 + 1) wrong++;
  }
  if (wrong) {
    put_dec(wrong);
    put_str(" results wrong\n");
  } else {
    put_str("custom device: all results correct\n");
  }
  return 0;
}
