/* VMCALL as a hypercall channel (see hypercall.md for the ABI): asks the host to add and to multiply,
 * sends an unknown operation, and prints each result. Flat binary for long mode at 0x100000.
 * Expected output: hypercall.expected. */
#include "guest.h"

#define HC_CHANNEL 12 /* = KVM_HC_MAP_GPA_RANGE, the one hypercall KVM hands to user space */
#define OP_ADD 1
#define OP_MUL 2
#define OP_UNKNOWN 0x7f

struct request {
  u64 op, arg0, arg1, arg2;
};

int main(void);

static volatile struct request req __attribute__((aligned(4096)));

static u64 hypercall(u64 op, u64 a, u64 b) {
  u64 ret;
  req.op = op;
  req.arg0 = a;
  req.arg1 = b;
  req.arg2 = 0;
  __asm__ volatile("vmcall" : "=a"(ret) : "a"((u64)HC_CHANNEL), "b"((u64)&req), "c"(1ull), "d"(0ull) : "memory");
  return ret;
}

static void put_dec64(u64 v) {
  char buf[20];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) put_char(buf[--n]);
}

static void report(const char *what, u64 a, u64 b, u64 r) {
  put_str("hypercall ");
  put_str(what);
  put_char('(');
  put_dec64(a);
  put_str(", ");
  put_dec64(b);
  put_str(") = ");
  put_dec64(r);
  put_char('\n');
}

int main(void) {
  report("add", 1000, 234, hypercall(OP_ADD, 1000, 234));
  report("mul", 6, 7, hypercall(OP_MUL, 6, 7));
  u64 r = hypercall(OP_UNKNOWN, 0, 0);
  put_str("hypercall op 127 = ");
  put_hex(r);
  put_str(r == ~0ull ? " (unknown op refused)\n" : " (unexpected)\n");
  return 0;
}
