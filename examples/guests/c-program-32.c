/* A freestanding C program for the interpreter's 32-bit protected mode (test/cpu/c-program-32.test.ts).
 * It exercises what gcc -O2 -m32 emits: 64-bit arithmetic on 32-bit registers (add/adc, sub/sbb,
 * shld/shrd, mul, 64-bit division through the libgcc helpers defined below), jump tables, inline
 * string instructions, bitfields, SSE2 (intrinsics, scalar doubles, auto-vectorized loops), x87
 * conversions of 64-bit integers, varargs and indirect calls. Each section prints a line to port
 * 0xE9; the expected output is what the same source prints when built hosted (-DHOSTED) on the host.
 * Build: sh c-program-32.sh (or the CMake target c-program-32), which also rewrites the test's image. */
#ifndef HOSTED
/* xmmintrin.h pulls in mm_malloc.h, which wants the C library's stdlib.h: not freestanding */
#define _MM_MALLOC_H_INCLUDED
#endif
#include <emmintrin.h>
#include <stdarg.h>

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef int i32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef __SIZE_TYPE__ size_t;

#ifdef HOSTED
#include <stdio.h>
#include <string.h>
static void outb(u8 c) { putchar(c); }
#else
static inline void outb(u8 c) { __asm__ volatile("outb %0, $0xe9" ::"a"(c)); }

/* What a freestanding program must provide: gcc may call these for struct copies and clears. */
void *memcpy(void *d, const void *s, size_t n) {
  void *r = d;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return r;
}
void *memset(void *d, int c, size_t n) {
  void *r = d;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return r;
}
void *memmove(void *d, const void *s, size_t n) {
  if ((const u8 *)d <= (const u8 *)s || (const u8 *)d >= (const u8 *)s + n) return memcpy(d, s, n);
  /* overlapping, destination above: copy backwards with the direction flag set */
  u8 *de = (u8 *)d + n - 1;
  const u8 *se = (const u8 *)s + n - 1;
  __asm__ volatile("std; rep movsb; cld" : "+D"(de), "+S"(se), "+c"(n) : : "memory");
  return d;
}
int memcmp(const void *a, const void *b, size_t n) {
  if (n == 0) return 0;
  const u8 *p = a, *q = b;
  __asm__ volatile("repe cmpsb" : "+D"(q), "+S"(p), "+c"(n) : : "memory", "cc");
  return (int)p[-1] - (int)q[-1];
}
size_t strlen(const char *s) {
  const char *p = s;
  size_t n = ~(size_t)0;
  __asm__ volatile("repne scasb" : "+D"(p), "+c"(n) : "a"(0) : "memory", "cc");
  return ~n - 1;
}

/* The 64-bit division helpers of libgcc, which -nostdlib leaves out. A 32-bit divisor takes two
 * DIVs (the first remainder is below the divisor, so the second cannot overflow); a wider one,
 * shift-and-subtract. */
static u64 udivmod64(u64 n, u64 d, u64 *rem) {
  if ((d >> 32) == 0) {
    u32 dl = (u32)d, hi = (u32)(n >> 32), lo = (u32)n, qhi = hi / dl, r = hi % dl, qlo;
    __asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(dl));
    *rem = r;
    return ((u64)qhi << 32) | qlo;
  }
  int shift = __builtin_clzll(d) - __builtin_clzll(n);
  u64 q = 0;
  if (shift < 0) {
    *rem = n;
    return 0;
  }
  d <<= shift;
  for (int i = 0; i <= shift; i++) {
    q <<= 1;
    if (n >= d) {
      n -= d;
      q |= 1;
    }
    d >>= 1;
  }
  *rem = n;
  return q;
}
u64 __udivdi3(u64 n, u64 d) {
  u64 r;
  return udivmod64(n, d, &r);
}
u64 __umoddi3(u64 n, u64 d) {
  u64 r;
  udivmod64(n, d, &r);
  return r;
}
i64 __divdi3(i64 n, i64 d) {
  u64 r, q = udivmod64(n < 0 ? -(u64)n : (u64)n, d < 0 ? -(u64)d : (u64)d, &r);
  return (n < 0) != (d < 0) ? -(i64)q : (i64)q;
}
i64 __moddi3(i64 n, i64 d) {
  u64 r;
  udivmod64(n < 0 ? -(u64)n : (u64)n, d < 0 ? -(u64)d : (u64)d, &r);
  return n < 0 ? -(i64)r : (i64)r;
}
int __ctzdi2(u64 v) { return (u32)v ? __builtin_ctz((u32)v) : 32 + __builtin_ctz((u32)(v >> 32)); }
u64 __udivmoddi4(u64 n, u64 d, u64 *rem) { return udivmod64(n, d, rem); }
i64 __divmoddi4(i64 n, i64 d, i64 *rem) {
  i64 q = __divdi3(n, d);
  *rem = n - q * d;
  return q;
}
#endif

/* ---- output: a small printf (varargs, 64-bit decimal through the division helpers) ---- */
static void put_u64(u64 v, unsigned base, int width) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  while (n < width) buf[n++] = '0';
  while (n) outb(buf[--n]);
}
static void say(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  for (; *f; f++) {
    if (*f != '%') {
      outb(*f);
      continue;
    }
    switch (*++f) {
      case 'u': put_u64(va_arg(ap, u32), 10, 0); break;
      case 'd': {
        i32 v = va_arg(ap, i32);
        if (v < 0) outb('-');
        put_u64(v < 0 ? -(u64)v : (u64)v, 10, 0);
        break;
      }
      case 'x': put_u64(va_arg(ap, u32), 16, 8); break;
      case 'X': put_u64(va_arg(ap, u64), 16, 16); break;
      case 'D': {
        i64 v = va_arg(ap, i64);
        if (v < 0) outb('-');
        put_u64(v < 0 ? -(u64)v : (u64)v, 10, 0);
        break;
      }
      case 'U': put_u64(va_arg(ap, u64), 10, 0); break;
      case 's':
        for (const char *s = va_arg(ap, const char *); *s; s++) outb(*s);
        break;
      default: outb(*f);
    }
  }
  va_end(ap);
}

/* ---- 64-bit arithmetic on 32-bit registers ---- */
static u64 state = 0x9e3779b97f4a7c15ull;
static u64 splitmix(void) {
  u64 z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static u64 rotl(u64 x, unsigned k) { return (x << (k & 63)) | (x >> (-k & 63)); }

__attribute__((noinline)) static u64 shifts(u64 x, unsigned n) {
  i64 s = (i64)x;
  return (x << n) ^ (x >> n) ^ (u64)(s >> n) ^ rotl(x, n * 7);
}

static void arith64(void) {
  u64 sum = 0, prod = 1, mix = 0;
  i64 ssum = 0;
  for (int i = 0; i < 200; i++) {
    u64 a = splitmix(), b = splitmix();
    sum += a - (b >> 3);
    prod = prod * (a | 1) + (b ^ sum);
    mix ^= shifts(a, i & 63);
    ssum += ((i64)a >> 17) - ((i64)b >> 40);
    if (a < b) mix += 0x10001;
    if ((i64)a > (i64)b) mix -= 3;
    mix += __builtin_bswap64(a) >> __builtin_ctzll(b | 1ull << 63);
    sum ^= (u64)__builtin_clzll(a | 1) << (i & 31);
  }
  u32 h = (u32)(prod >> 32), l = (u32)prod;
  u64 wide = (u64)h * l + (u64)(u32)(sum >> 7) * 0xfffffffbu;
  say("arith %X %X %X %D %X\n", sum, prod, mix, ssum, wide);
}

static void division(void) {
  static const i64 nums[] = {0, 1, -1, 7, -7, 123456789012345ll, -987654321098765ll, 0x7fffffffffffffffll,
                             -0x7fffffffffffffffll - 1, 0x123456789abcdefll};
  static const i64 dens[] = {1, -1, 3, -3, 10, 1000000007ll, -4294967296ll, 4294967297ll, 0x10000000000ll,
                             -0x7edcba9876543ll};
  u64 h = 0xcbf29ce484222325ull;
  for (unsigned i = 0; i < sizeof nums / sizeof *nums; i++) {
    for (unsigned j = 0; j < sizeof dens / sizeof *dens; j++) {
      i64 n = nums[i], d = dens[j];
      if (n == -0x7fffffffffffffffll - 1 && d == -1) continue; /* overflows */
      i64 q = n / d, r = n % d;
      u64 uq = (u64)n / (u64)d, ur = (u64)n % (u64)d;
      h = (h ^ (u64)q) * 0x100000001b3ull;
      h = (h ^ (u64)r) * 0x100000001b3ull;
      h = (h ^ uq ^ (ur << 1)) * 0x100000001b3ull;
    }
  }
  say("div %X %D %U %D\n", h, (i64)-9223372036854775807ll - 1, (u64)18446744073709551615ull,
      (i64)-1234567890123ll);
}

/* ---- a jump table: a small stack machine (dense cases) ---- */
enum { PUSH, ADD, SUB, MUL, DUP, SWAP, OVER, DROP, JNZ, DEC, MOD, ROT, XOR, HALT };
__attribute__((noinline)) static i32 vm(const u8 *code) {
  i32 st[16], sp = 0;
  for (const u8 *pc = code;;) {
    switch (*pc++) {
      case PUSH: st[sp++] = (signed char)*pc++; break;
      case ADD: sp--; st[sp - 1] += st[sp]; break;
      case SUB: sp--; st[sp - 1] -= st[sp]; break;
      case MUL: sp--; st[sp - 1] *= st[sp]; break;
      case DUP: st[sp] = st[sp - 1]; sp++; break;
      case SWAP: { i32 t = st[sp - 1]; st[sp - 1] = st[sp - 2]; st[sp - 2] = t; break; }
      case OVER: st[sp] = st[sp - 2]; sp++; break;
      case DROP: sp--; break;
      case JNZ: { signed char off = (signed char)*pc++; if (st[--sp]) pc += off; break; }
      case DEC: st[sp - 1]--; break;
      case MOD: sp--; st[sp - 1] %= st[sp]; break;
      case ROT: { i32 t = st[sp - 3]; st[sp - 3] = st[sp - 2]; st[sp - 2] = st[sp - 1]; st[sp - 1] = t; break; }
      case XOR: sp--; st[sp - 1] ^= st[sp]; break;
      case HALT: return st[sp - 1];
      default: return -1;
    }
  }
}
static void bytecode(void) {
  /* fib(40): a b n -> loop { rot rot dup rot add rot dec dup jnz } drop drop */
  static const u8 fib[] = {PUSH, 0, PUSH, 1, PUSH, 40, ROT, ROT, DUP, ROT, ADD, ROT, DEC, DUP, JNZ, (u8)-10,
                           DROP, DROP, HALT};
  /* gcd(126*120*35, 98*99*15) by Euclid: a b -> loop { over over mod rot drop dup jnz } drop */
  static const u8 gcd[] = {PUSH, 126, PUSH, 120, MUL, PUSH, 35, MUL, PUSH, 98, PUSH, 99, MUL, PUSH, 15, MUL,
                           OVER, OVER, MOD, ROT, DROP, DUP, JNZ, (u8)-8, DROP, HALT};
  static const u8 expr[] = {PUSH, -100, PUSH, 77, SWAP, SUB, PUSH, 13, XOR, PUSH, 9, MUL, HALT};
  say("vm %d %d %d %d\n", vm(fib), vm(gcd), vm(expr), vm((const u8[]){0x7f}));
}

/* ---- string instructions: memcpy/memset/memmove/memcmp/strlen and struct copies ---- */
struct rec {
  u32 id;
  char name[29];
  u64 val;
  u16 tags[7];
};
static u8 buf[512], other[512];
static struct rec recs[9];
static u32 fnv(const u8 *p, size_t n) {
  u32 h = 2166136261u;
  while (n--) h = (h ^ *p++) * 16777619u;
  return h;
}
static int sign(int v) { return (v > 0) - (v < 0); }
static void strings(void) {
  for (int i = 0; i < 512; i++) buf[i] = (u8)(i * 7 + (i >> 3));
  memcpy(other, buf, sizeof buf);
  memmove(buf + 10, buf, 300);  /* overlapping, upwards: backwards copy */
  memmove(other, other + 33, 200); /* overlapping, downwards */
  memset(buf + 400, 0xa5, 77);
  int c1 = sign(memcmp(buf, other, 512)), c2 = sign(memcmp(other, buf, 512)), c3 = memcmp(buf, buf, 512);
  for (int i = 0; i < 9; i++) {
    struct rec r = {.id = (u32)i * 0x01010101u, .val = splitmix()};
    const char *src = "the quick brown fox jumps over";
    memcpy(r.name, src + i, 28 - i);
    for (int k = 0; k < 7; k++) r.tags[k] = (u16)(r.val >> (k * 8));
    recs[8 - i] = r; /* a struct copy */
  }
  struct rec first = recs[0];
  recs[0] = recs[8];
  recs[8] = first;
  u32 lens = 0, fields = 0;
  for (int i = 0; i < 9; i++) {
    lens = lens * 31 + (u32)strlen(recs[i].name);
    /* field by field: the padding (and so sizeof) differs between the i386 and x86-64 ABIs */
    fields = fields * 7 + recs[i].id + fnv((const u8 *)recs[i].name, sizeof recs[i].name) +
             (u32)(recs[i].val >> 13) + fnv((const u8 *)recs[i].tags, sizeof recs[i].tags);
  }
  say("str %x %x %x %d %d %d %u %s\n", fnv(buf, sizeof buf), fnv(other, sizeof other), fields, c1, c2, c3,
      lens, recs[4].name);
}

/* ---- bitfields ---- */
struct bf {
  unsigned a : 3;
  signed b : 5;
  unsigned c : 12;
  unsigned d : 1;
  signed e : 11;
};
struct bf64 {
  u64 x : 40;
  u64 y : 23;
  u64 z : 1;
};
static void bitfields(void) {
  struct bf f = {0};
  struct bf64 g = {0};
  i64 acc = 0;
  for (int i = 0; i < 300; i++) {
    u64 r = splitmix();
    f.a += (unsigned)r;
    f.b = (signed)(r >> 8) ^ f.b;
    f.c = f.c * 3 + (unsigned)(r >> 20);
    f.d = !f.d;
    f.e -= (signed)(r >> 40);
    g.x += r;
    g.y ^= r >> 41;
    g.z = g.x > g.y;
    acc = acc * 5 + f.a + f.b + f.c + f.d + f.e + (i64)g.x - g.y + g.z;
  }
  u32 raw;
  u64 raw64;
  memcpy(&raw, &f, 4);
  memcpy(&raw64, &g, 8);
  say("bits %D %x %X\n", acc, raw, raw64);
}

/* ---- SSE2: intrinsics, scalar doubles and floats, an auto-vectorized loop ---- */
static u64 fold(__m128i v) {
  u64 lo = (u64)(u32)_mm_cvtsi128_si32(v) | (u64)(u32)_mm_cvtsi128_si32(_mm_srli_si128(v, 4)) << 32;
  u64 hi = (u64)(u32)_mm_cvtsi128_si32(_mm_srli_si128(v, 8)) |
           (u64)(u32)_mm_cvtsi128_si32(_mm_srli_si128(v, 12)) << 32;
  return lo * 31 + hi;
}
static u64 dbits(double d) {
  u64 b;
  memcpy(&b, &d, 8);
  return b;
}
static u32 A[256], B[256];
static u16 S[256];
static u8 hay[200];
__attribute__((noinline)) static int find(const u8 *p, int n, u8 c) {
  __m128i needle = _mm_set1_epi8((char)c);
  for (int i = 0; i + 16 <= n; i += 16) {
    int m = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), needle));
    if (m) return i + __builtin_ctz(m);
  }
  return -1;
}
static void sse2(void) {
  __m128i a = _mm_set_epi32(0x01234567, (int)0x89abcdef, 0x0badf00d, 0x12345678);
  __m128i b = _mm_set_epi16(1, -2, 3, -4, 5, -6, 7, -8);
  u64 h = 0;
  for (int i = 0; i < 64; i++) {
    a = _mm_add_epi32(a, b);
    b = _mm_xor_si128(b, _mm_slli_epi64(a, 5));
    __m128i c = _mm_mullo_epi16(a, b);
    __m128i d = _mm_madd_epi16(c, b);
    __m128i e = _mm_sad_epu8(d, a);
    __m128i f = _mm_shuffle_epi32(_mm_add_epi64(e, d), 0x1b);
    __m128i g = _mm_unpacklo_epi8(f, a);
    __m128i k = _mm_mul_epu32(g, _mm_srli_epi64(b, 3));
    __m128i m = _mm_packs_epi32(_mm_srai_epi32(k, 7), _mm_cmpgt_epi16(c, g));
    m = _mm_max_epi16(m, _mm_shufflehi_epi16(m, 0x93));
    m = _mm_avg_epu8(_mm_min_epu8(m, a), _mm_subs_epu8(b, m));
    m = _mm_andnot_si128(_mm_srli_epi16(m, 1), _mm_unpackhi_epi32(a, m));
    h = h * 0x100000001b3ull + fold(m) + (u64)_mm_movemask_epi8(c);
    a = _mm_sub_epi8(a, m);
  }
  for (int i = 0; i < 200; i++) hay[i] = (u8)(i * 13 + 1);
  int pos = find(hay, 200, 0x42) * 1000 + (find(hay, 200, 0) + 1);

  double s = 0, t = 1;
  float fs = 0;
  for (int i = 1; i <= 300; i++) {
    s += 1.0 / ((double)i * i);
    t = t * 1.0001 - 1e-7 * i;
    fs += (float)i / (float)(i + 1);
  }
  __m128d sq = _mm_sqrt_sd(_mm_set_sd(0), _mm_set_sd(s * 6));
  __m128i ci = _mm_cvttpd_epi32(_mm_mul_pd(_mm_set_pd(-2.75, 3.5e6), _mm_set1_pd(t)));
  i32 trunc = (i32)(s * 1e9);
  for (int i = 0; i < 256; i++) {
    A[i] = (u32)splitmix();
    B[i] = (u32)i * 2654435761u;
    S[i] = (u16)(i * 77);
  }
  u32 vs = 0;
  for (int i = 0; i < 256; i++) A[i] = A[i] * B[i] + (B[i] >> 3);
  for (int i = 0; i < 256; i++) vs += A[i] ^ S[i];
  say("sse %X %d %X %X %x %d %x %x\n", h, pos, dbits(s), dbits(_mm_cvtsd_f64(sq)), (u32)fold(ci),
      trunc, vs, (u32)(fs * 1000));
}

/* ---- x87 conversions between 64-bit integers and doubles (no SSE form in 32-bit code) ---- */
static void x87(void) {
  static const i64 vals[] = {0, -1, 1ll << 52, (1ll << 53) + 1, -123456789012345678ll, 0x7fffffffffffffffll};
  u64 h = 0;
  for (unsigned i = 0; i < sizeof vals / sizeof *vals; i++) {
    double d = (double)vals[i];
    i64 back = (i64)(d / 3.0);
    h = h * 0x100000001b3ull + dbits(d) + (u64)back;
  }
  say("x87 %X\n", h);
}

/* ---- indirect calls and recursion ---- */
typedef int (*cmp_fn)(const void *, const void *);
static int cmp_i64(const void *a, const void *b) {
  i64 x = *(const i64 *)a, y = *(const i64 *)b;
  return (x > y) - (x < y);
}
static int cmp_u32_rev(const void *a, const void *b) {
  u32 x = *(const u32 *)a, y = *(const u32 *)b;
  return (y > x) - (y < x);
}
__attribute__((noinline)) static void isort(void *base, int n, int size, cmp_fn cmp) {
  u8 *p = base, tmp[16];
  for (int i = 1; i < n; i++) {
    memcpy(tmp, p + i * size, size);
    int j = i - 1;
    while (j >= 0 && cmp(p + j * size, tmp) > 0) {
      memcpy(p + (j + 1) * size, p + j * size, size);
      j--;
    }
    memcpy(p + (j + 1) * size, tmp, size);
  }
}
static u32 ack(u32 m, u32 n) { return m == 0 ? n + 1 : n == 0 ? ack(m - 1, 1) : ack(m - 1, ack(m, n - 1)); }
static void calls(void) {
  i64 v[40];
  u32 w[40];
  for (int i = 0; i < 40; i++) {
    v[i] = (i64)splitmix() >> (i % 50);
    w[i] = (u32)splitmix();
  }
  cmp_fn fns[2] = {cmp_i64, cmp_u32_rev};
  isort(v, 40, 8, fns[0]);
  isort(w, 40, 4, fns[1]);
  u64 h = 0;
  for (int i = 0; i < 40; i++) h = h * 0x100000001b3ull + (u64)v[i] + w[i];
  say("calls %X %D %x %u\n", h, v[0], w[39], ack(2, 200));
}

#ifdef HOSTED
int main(void) {
#else
__attribute__((section(".text.start"), force_align_arg_pointer, noreturn)) void _start(void) {
#endif
  arith64();
  division();
  bytecode();
  strings();
  bitfields();
  sse2();
  x87();
  calls();
  say("done\n");
#ifdef HOSTED
  return 0;
#else
  for (;;) __asm__ volatile("cli; hlt");
#endif
}
