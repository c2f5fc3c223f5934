/* Multiboot v1 kernel (ELF32) that tests a multiprocessor the way a firmware-less kernel finds and
 * starts one: the ACPI MADT names the CPUs (RSDP in the EBDA or 0xE0000-0xFFFFF, then RSDT/XSDT),
 * every AP gets INIT, INIT de-assert, SIPI, SIPI through the local APIC's ICR as Linux sends them,
 * and runs the trampoline in smp-start.S (real mode -> protected mode -> ap_main). Then the test the
 * command line names ("test=NAME n=COUNT"; SDM vol. 3 ch. 8 and 10 for the APIC side):
 *   xadd      every CPU adds 1 to one counter n times with LOCK XADD (n: 1000000)
 *   spinlock  every CPU increments a plain counter n times under a spinlock, XCHG on even CPUs and
 *             LOCK CMPXCHG on odd ones (n: 1000000)
 *   pingpong  CPU 0 sends a fixed IPI to CPU 1, whose handler sends one back; n rounds (n: 1000)
 *   initsipi  CPU 1 spins; INIT stops it; a SIPI at another page starts a second entry
 *   shootdown CPU 0 remaps a page both CPUs use and sends an IPI; CPU 1's handler runs INVLPG and
 *             CPU 1 then reads the new page
 *   ioapic    the I/O APIC sends the PIT's interrupt to CPU 1 only: CPU 1 takes n (n: 20), CPU 0 none
 *   ipi       IPI addressing: the three shorthands, a logical (flat) destination, the physical
 *             broadcast, lowest priority to a logical set (exactly one CPU takes it), an NMI
 *   compute   the CPUs share out mix(i) for i < n and sum it (mod 2^32): CPU-bound work for
 *             bench/smp, checked against the host's sum (n: 1000000)
 * Only CPU 0 prints (the 16550 at 0x3f8). The verdict goes to isa-debug-exit: 0 passed, 1 failed,
 * 2 could not run (no MADT, too few CPUs, an AP that did not start). */
#include "guest.h"

#define MAX_CPUS 16
#define LAPIC_BASE 0xfee00000u
#define LAPIC_ID 0x20
#define LAPIC_LDR 0xd0
#define LAPIC_DFR 0xe0
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_BUSY (1u << 12)
#define ICR_INIT (5u << 8)
#define ICR_SIPI (6u << 8)
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_LOWEST (1u << 8)
#define ICR_NMI (4u << 8)
#define ICR_LOGICAL (1u << 11)
#define ICR_SELF (1u << 18)
#define ICR_ALL (2u << 18)
#define ICR_OTHERS (3u << 18)

/* SIPI vector V starts an AP at V << 12: two pages below the multiboot information at 0x9000 */
#define TRAMPOLINE 0x8000u
#define TRAMPOLINE_SECOND 0x7000u

#define V_PING 0x40
#define V_PONG 0x41
#define V_SHOOTDOWN 0x42
#define V_WAKE 0x43
#define V_COUNT 0x44
#define V_IOAPIC 0x50
#define V_SPURIOUS 0xff

/* rdtsc ticks to wait for an event from another CPU before giving up (~8 s at 2 GHz) */
#define EVENT_TIMEOUT (1ull << 34)
/* initsipi: a CPU whose heartbeat holds still this long (~1 ms at 2 GHz) has stopped */
#define STILL_TICKS (1ull << 21)

#define PASS 0
#define FAIL 1
#define CANNOT 2

extern char trampoline_start[], trampoline_end[], tramp_target[];
extern char ap_entry32[], ap_entry32_second[], isr_stubs[];
void kmain(u32 magic, const u32 *mbi);
void ap_main(u32 apic_id, u32 cs, u32 second);
void interrupt(u32 vector);
void halt_forever(void) __attribute__((noreturn));

/* A pointer to a physical address, opaque to the compiler (which would otherwise treat low
 * constant addresses as out-of-bounds pointers). Paging, where on, is an identity map. */
static inline void *phys(u32 addr) {
  void *p;
  __asm__("" : "=r"(p) : "0"(addr));
  return p;
}

static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline u64 rdtsc(void) {
  u32 lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((u64)hi << 32) | lo;
}
static inline u32 irq_save(void) {
  u32 flags;
  __asm__ volatile("pushfl; popl %0; cli" : "=r"(flags)::"memory");
  return flags;
}
static inline void irq_restore(u32 flags) { __asm__ volatile("pushl %0; popfl" ::"r"(flags) : "memory", "cc"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline u8 inb(u16 port) {
  u8 v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static inline u32 lapic_read(u32 reg) { return *(volatile u32 *)phys(LAPIC_BASE + reg); }
static inline void lapic_write(u32 reg, u32 v) { *(volatile u32 *)phys(LAPIC_BASE + reg) = v; }
static inline u32 my_apic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

/* ---- what the CPUs share ---- */

static u32 ncpus;                 /* CPUs the MADT lists (at most MAX_CPUS are used) */
static u32 apic_ids[MAX_CPUS];    /* index 0 is the BSP */
static volatile u32 started[MAX_CPUS];   /* times each AP came through the first entry */
static volatile u32 boot_cs[MAX_CPUS];   /* the real-mode CS it ran the trampoline at */
static volatile u32 second_runs[MAX_CPUS];
static volatile u32 second_cs[MAX_CPUS];
static u32 ioapic_base, pit_gsi;

static volatile u32 command, command_seq, done;
static u32 count_n;

static int cpu_index(u32 apic_id) {
  for (u32 i = 0; i < ncpus; i++)
    if (apic_ids[i] == apic_id) return (int)i;
  return -1;
}

/* Output from an AP (only on a fatal error) must not interleave with CPU 0's. */
static volatile u32 print_lock;
static void fatal(u32 cpu, const char *what, u32 value) __attribute__((noreturn));
static void fatal(u32 cpu, const char *what, u32 value) {
  cli();
  while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE)) pause();
  put_str("smp: CPU ");
  put_dec(cpu);
  put_str(": ");
  put_str(what);
  put_char(' ');
  put_hex(value);
  put_char('\n');
  debug_exit(FAIL);
  halt_forever();
}

static void finish(u32 verdict) __attribute__((noreturn));
static void finish(u32 verdict) {
  debug_exit((u8)verdict);
  halt_forever();
}

/* ---- command line ---- */

static char test_name[16];
static u32 n_given, n_value;

static int word_is(const char *s, const char *key) {
  while (*key)
    if (*s++ != *key++) return 0;
  return 1;
}

static void parse_cmdline(const char *s) {
  while (*s) {
    while (*s == ' ') s++;
    if (word_is(s, "test=")) {
      s += 5;
      u32 i = 0;
      while (*s && *s != ' ') {
        if (i + 1 < sizeof test_name) test_name[i++] = *s;
        s++;
      }
      test_name[i] = 0;
    } else if (word_is(s, "n=")) {
      s += 2;
      n_given = 1;
      n_value = 0;
      while (*s >= '0' && *s <= '9') n_value = n_value * 10 + (u32)(*s++ - '0');
    }
    while (*s && *s != ' ') s++;
  }
}

static int streq(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

/* ---- ACPI: RSDP -> RSDT/XSDT -> MADT (ACPI 6.x sections 5.2.5-5.2.12) ---- */

static int checksum_ok(const u8 *p, u32 length) {
  u8 sum = 0;
  for (u32 i = 0; i < length; i++) sum = (u8)(sum + p[i]);
  return sum == 0;
}

static int signature_is(const u8 *p, const char *sig) {
  for (u32 i = 0; sig[i]; i++)
    if (p[i] != (u8)sig[i]) return 0;
  return 1;
}

static const u8 *scan_rsdp(u32 from, u32 to) {
  for (u32 a = from; a < to; a += 16) {
    const u8 *p = phys(a);
    if (signature_is(p, "RSD PTR ") && checksum_ok(p, 20)) return p;
  }
  return 0;
}

static const u8 *find_rsdp(void) {
  /* the first KiB of the EBDA (its segment at 0x40E), then the BIOS area */
  u32 ebda = (u32)*(volatile u16 *)phys(0x40e) << 4;
  const u8 *p = 0;
  if (ebda >= 0x80000 && ebda < 0xa0000) p = scan_rsdp(ebda, ebda + 1024);
  return p ? p : scan_rsdp(0xe0000, 0x100000);
}

static inline u32 rd32(const u8 *p) { return *(const u32 *)p; }

static const u8 *table_at(u32 addr, const char *sig) {
  const u8 *t = phys(addr);
  if (!signature_is(t, sig) || !checksum_ok(t, rd32(t + 4))) return 0;
  return t;
}

static const u8 *find_madt(void) {
  const u8 *rsdp = find_rsdp();
  if (!rsdp) return 0;
  const u32 xsdt = rd32(rsdp + 24), xsdt_high = rd32(rsdp + 28);
  if (rsdp[15] >= 2 && xsdt && !xsdt_high && checksum_ok(rsdp, rd32(rsdp + 20))) {
    const u8 *x = table_at(xsdt, "XSDT");
    if (x) {
      for (u32 at = 36; at + 8 <= rd32(x + 4); at += 8) {
        if (rd32(x + at + 4)) continue;
        const u8 *t = table_at(rd32(x + at), "APIC");
        if (t) return t;
      }
    }
  }
  const u8 *r = table_at(rd32(rsdp + 16), "RSDT");
  if (!r) return 0;
  for (u32 at = 36; at + 4 <= rd32(r + 4); at += 4) {
    const u8 *t = table_at(rd32(r + at), "APIC");
    if (t) return t;
  }
  return 0;
}

/* Processor Local APIC entries (type 0, enabled), the I/O APIC (type 1) and where ISA IRQ 0 arrives
 * (an override, type 2; else GSI 0). Returns how many CPUs the table lists. */
static u32 read_madt(const u8 *madt) {
  u32 listed = 0;
  pit_gsi = 0;
  for (u32 at = 44; at + 2 <= rd32(madt + 4);) {
    const u8 *e = madt + at;
    if (e[1] < 2) break;
    if (e[0] == 0 && e[1] >= 8 && (rd32(e + 4) & 1) && e[3] != 0xff) {
      if (ncpus < MAX_CPUS) apic_ids[ncpus++] = e[3];
      listed++;
    } else if (e[0] == 1 && e[1] >= 12 && !ioapic_base) {
      ioapic_base = rd32(e + 4);
    } else if (e[0] == 2 && e[1] >= 10 && e[2] == 0 && e[3] == 0) {
      pit_gsi = rd32(e + 4);
    }
    at += e[1];
  }
  return listed;
}

/* ---- interrupts ---- */

static u64 idt[256];

static void load_idt(void) {
  struct __attribute__((packed)) {
    u16 limit;
    u32 base;
  } d = {sizeof idt - 1, (u32)idt};
  __asm__ volatile("lidt %0" ::"m"(d));
}

static void build_idt(void) {
  for (u32 v = 0; v < 256; v++) {
    u32 handler = (u32)isr_stubs + v * 16;
    /* 32-bit interrupt gate, present, DPL 0, selector 0x08 */
    idt[v] = ((u64)((handler & 0xffff0000u) | 0x8e00u) << 32) | (0x08u << 16) | (handler & 0xffffu);
  }
}

static void lapic_enable(void) { lapic_write(LAPIC_SVR, 0x100 | V_SPURIOUS); }

/* ICR writes are two stores; an interrupt handler that sends an IPI must not come between them. */
static void send_icr(u32 apic_id, u32 low) {
  u32 flags = irq_save();
  while (lapic_read(LAPIC_ICR_LOW) & ICR_BUSY) pause();
  lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
  lapic_write(LAPIC_ICR_LOW, low);
  while (lapic_read(LAPIC_ICR_LOW) & ICR_BUSY) pause();
  irq_restore(flags);
}

static void send_ipi(u32 cpu, u32 vector) { send_icr(apic_ids[cpu], vector); }

static volatile u32 pings, pongs, shootdown_acks;
static volatile u32 irq_counts[MAX_CPUS];
static volatile u32 ipi_hits[MAX_CPUS], nmi_hits[MAX_CPUS];
static volatile u32 *shootdown_va;

void interrupt(u32 vector) {
  int me = cpu_index(my_apic_id());
  u32 cpu = me < 0 ? 0xffu : (u32)me;
  switch (vector) {
    case V_PING:
      pings++;
      send_ipi(0, V_PONG);
      break;
    case V_PONG:
      pongs++;
      break;
    case V_SHOOTDOWN:
      __asm__ volatile("invlpg (%0)" ::"r"(shootdown_va) : "memory");
      shootdown_acks++;
      break;
    case V_WAKE:
      break;
    case V_COUNT:
      ipi_hits[cpu]++;
      break;
    case 2:
      nmi_hits[cpu]++;
      return; /* an NMI takes no EOI */
    case V_IOAPIC:
      irq_counts[cpu]++;
      break;
    case V_SPURIOUS:
      return; /* no EOI for a spurious interrupt */
    default:
      fatal(cpu, vector < 32 ? "exception" : "unexpected interrupt vector", vector);
  }
  lapic_write(LAPIC_EOI, 0);
}

/* Sleep with interrupts on until *p reaches want (the STI shadow keeps a wake-up from slipping in
 * between the check and HLT). Returns with interrupts on. */
static void sleep_until(volatile u32 *p, u32 want) {
  for (;;) {
    cli();
    if (*p >= want) break;
    __asm__ volatile("sti; hlt" ::: "memory");
  }
  sti();
}

/* Spin (interrupts as they are) until *p reaches want; 0 when the other CPU never got there. */
static int wait_for(volatile u32 *p, u32 want) {
  u64 end = rdtsc() + EVENT_TIMEOUT;
  while (*p < want) {
    if (rdtsc() > end) return 0;
    pause();
  }
  return 1;
}

static void delay_spins(u32 n) {
  for (volatile u32 i = 0; i < n; i++) pause();
}

/* ---- AP start-up ---- */

static void install_trampoline(u32 at, char *entry) {
  u8 *dst = phys(at);
  for (u32 i = 0; i < (u32)(trampoline_end - trampoline_start); i++) dst[i] = (u8)trampoline_start[i];
  *(u32 *)(dst + (tramp_target - trampoline_start)) = (u32)entry;
}

static int start_ap(u32 cpu) {
  u32 id = apic_ids[cpu];
  send_icr(id, ICR_INIT | ICR_LEVEL | ICR_ASSERT);
  /* the de-assert Linux sends after INIT: Pentium 4 and later APICs ignore it (SDM 10.6.1) */
  send_icr(id, ICR_INIT | ICR_LEVEL);
  /* two SIPIs as the MP protocol has it: the second finds the AP running and is dropped */
  send_icr(id, ICR_SIPI | (TRAMPOLINE >> 12));
  send_icr(id, ICR_SIPI | (TRAMPOLINE >> 12));
  return wait_for(&started[cpu], 1);
}

/* ---- the tests: each CPU's part ---- */

enum { T_NONE, T_XADD, T_SPINLOCK, T_PINGPONG, T_INITSIPI, T_SHOOTDOWN, T_IOAPIC, T_COMPUTE, T_IPI };

static volatile u32 counter;

static void part_xadd(void) {
  for (u32 i = 0; i < count_n; i++) {
    u32 one = 1;
    __asm__ volatile("lock xaddl %0, %1" : "+r"(one), "+m"(counter)::"memory");
  }
}

static volatile u32 spin, plain_counter;

static void lock_xchg(void) {
  for (;;) {
    u32 v = 1;
    __asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(spin)::"memory");
    if (!v) return;
    while (spin) pause();
  }
}

static void lock_cmpxchg(void) {
  for (;;) {
    u32 expected = 0;
    __asm__ volatile("lock cmpxchgl %2, %1" : "+a"(expected), "+m"(spin) : "r"(1u) : "memory", "cc");
    if (!expected) return;
    while (spin) pause();
  }
}

static void part_spinlock(u32 cpu) {
  for (u32 i = 0; i < count_n; i++) {
    if (cpu & 1)
      lock_cmpxchg();
    else
      lock_xchg();
    u32 v = plain_counter; /* a plain load and a plain store: only the lock makes them exact */
    plain_counter = v + 1;
    barrier();
    spin = 0;
  }
}

/* compute: a 32-bit integer hash (lowbias32), some multiplies and shifts per value */
static inline u32 mix(u32 x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

static volatile u32 compute_sum;

static void part_compute(u32 cpu) {
  u32 share = count_n / ncpus, extra = count_n % ncpus;
  u32 from = share * cpu + (cpu < extra ? cpu : extra);
  u32 to = from + share + (cpu < extra ? 1 : 0);
  u32 sum = 0;
  for (u32 i = from; i < to; i++) sum += mix(i);
  __atomic_add_fetch(&compute_sum, sum, __ATOMIC_SEQ_CST);
}

static volatile u32 pingpong_over;

/* ipi: flat logical destinations, one bit per CPU for the first 8 (SDM 10.6.2.2) */
static volatile u32 ipi_ready, ipi_over;

static void logical_id_on(u32 cpu) {
  lapic_write(LAPIC_DFR, 0xffffffffu);
  lapic_write(LAPIC_LDR, cpu < 8 ? (1u << cpu) << 24 : 0);
}

static void part_ipi(u32 cpu) {
  logical_id_on(cpu);
  __atomic_add_fetch(&ipi_ready, 1, __ATOMIC_SEQ_CST);
  sleep_until(&ipi_over, 1);
  cli();
}

static void part_pingpong_cpu1(void) {
  sleep_until(&pingpong_over, 1);
  cli();
}

static volatile u32 heartbeat;

static void part_initsipi_cpu1(void) {
  for (;;) {
    heartbeat++;
    pause();
  }
}

/* shootdown: 32-bit paging, 4 MiB pages everywhere but the first 4 MiB, which has a page table */
#define SHOOT_VA 0x3ff000u
static u32 page_dir[1024] __attribute__((aligned(4096)));
static u32 page_table[1024] __attribute__((aligned(4096)));
static volatile u32 page_old[1024] __attribute__((aligned(4096)));
static volatile u32 page_new[1024] __attribute__((aligned(4096)));
static volatile u32 cpu1_before, cpu1_after, cpu1_read;

static void paging_on(void) {
  u32 r;
  __asm__ volatile("movl %0, %%cr3" ::"r"((u32)page_dir) : "memory");
  __asm__ volatile("movl %%cr4, %0; orl $0x10, %0; movl %0, %%cr4" : "=&r"(r)::"memory");
  __asm__ volatile("movl %%cr0, %0; orl $0x80000000, %0; movl %0, %%cr0" : "=&r"(r)::"memory");
}

static void build_page_tables(void) {
  for (u32 i = 0; i < 1024; i++) page_table[i] = (i << 12) | 3;
  page_table[SHOOT_VA >> 12] = (u32)page_old | 3;
  page_dir[0] = (u32)page_table | 3;
  for (u32 i = 1; i < 1024; i++) page_dir[i] = (i << 22) | 0x83; /* PS, RW, P */
  page_old[0] = 0xaaaa1111u;
  page_new[0] = 0xbbbb2222u;
  shootdown_va = phys(SHOOT_VA);
}

static void part_shootdown_cpu1(void) {
  paging_on();
  cpu1_before = *shootdown_va; /* the translation is in CPU 1's TLB from here on */
  cpu1_read = 1;
  sleep_until(&shootdown_acks, 1);
  cli();
  cpu1_after = *shootdown_va;
}

static void ioapic_write(u32 reg, u32 v) {
  *(volatile u32 *)phys(ioapic_base) = reg;
  *(volatile u32 *)phys(ioapic_base + 0x10) = v;
}

static volatile u32 ioapic_over;

static void part_ioapic_cpu1(void) {
  sleep_until(&ioapic_over, 1);
  cli();
}

static void run_part(u32 cpu) {
  switch (command) {
    case T_XADD:
      part_xadd();
      break;
    case T_SPINLOCK:
      part_spinlock(cpu);
      break;
    case T_PINGPONG:
      if (cpu == 1) part_pingpong_cpu1();
      break;
    case T_INITSIPI:
      if (cpu == 1) part_initsipi_cpu1();
      break;
    case T_SHOOTDOWN:
      if (cpu == 1) part_shootdown_cpu1();
      break;
    case T_IOAPIC:
      if (cpu == 1) part_ioapic_cpu1();
      break;
    case T_COMPUTE:
      part_compute(cpu);
      break;
    case T_IPI:
      part_ipi(cpu);
      break;
  }
}

void ap_main(u32 apic_id, u32 cs, u32 second) {
  int found = cpu_index(apic_id);
  if (found <= 0) halt_forever();
  u32 cpu = (u32)found;
  load_idt();
  lapic_enable(); /* INIT resets the local APIC too: enabled on every entry */
  u32 seen = command_seq;
  if (second) {
    second_cs[cpu] = cs;
    second_runs[cpu]++;
  } else {
    boot_cs[cpu] = cs;
    started[cpu]++;
  }
  for (;;) {
    while (command_seq == seen) pause();
    seen = command_seq;
    run_part(cpu);
    __atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
  }
}

/* ---- CPU 0: each test's verdict ---- */

static void start_command(u32 which) {
  command = which;
  done = 0;
  barrier();
  command_seq++;
}

static void wait_all_done(u32 others) {
  while (done < others) pause();
}

static void print_count_line(const char *name, u32 got) {
  u32 want = ncpus * count_n;
  put_str(name);
  put_str(": ");
  put_dec(ncpus);
  put_str(ncpus == 1 ? " CPU x " : " CPUs x ");
  put_dec(count_n);
  if (got == want) {
    put_str(" = ");
    put_dec(want);
    put_str(": ok\n");
    finish(PASS);
  }
  put_str(": the counter is ");
  put_dec(got);
  put_str(", want ");
  put_dec(want);
  put_str(": FAIL\n");
  finish(FAIL);
}

static void timed_out(const char *name, const char *what) __attribute__((noreturn));
static void timed_out(const char *name, const char *what) {
  put_str(name);
  put_str(": timed out waiting for ");
  put_str(what);
  put_str(": FAIL\n");
  finish(FAIL);
}

static void test_xadd(void) {
  start_command(T_XADD);
  part_xadd();
  wait_all_done(ncpus - 1);
  print_count_line("xadd", counter);
}

static void test_spinlock(void) {
  start_command(T_SPINLOCK);
  part_spinlock(0);
  wait_all_done(ncpus - 1);
  print_count_line("spinlock", plain_counter);
}

static void test_compute(void) {
  start_command(T_COMPUTE);
  part_compute(0);
  wait_all_done(ncpus - 1);
  put_str("compute: ");
  put_dec(ncpus);
  put_str(ncpus == 1 ? " CPU, " : " CPUs, ");
  put_dec(count_n);
  put_str(" values, sum ");
  put_hex(compute_sum);
  put_char('\n');
  finish(PASS);
}

static u32 hits_total(volatile u32 *hits) {
  u32 sum = 0;
  for (u32 i = 0; i < ncpus; i++) sum += hits[i];
  return sum;
}

static u32 bits_set(u32 v) {
  u32 n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}

/* Sends one IPI and waits for its deliveries, then a while longer for any extra one. The CPUs (by
 * index) in `expect` must take exactly one each; with `one_of`, exactly one of them in all (lowest
 * priority). Prints each CPU's count, CPU 0 first (lowest priority: how many took it, of how
 * many), and zeroes them. */
static int ipi_phase(const char *what, u32 dest, u32 icr, u32 expect, int one_of, volatile u32 *hits) {
  u32 want = one_of ? 1 : bits_set(expect);
  send_icr(dest, icr);
  u64 end = rdtsc() + EVENT_TIMEOUT;
  while (hits_total(hits) < want && rdtsc() < end) pause();
  delay_spins(20000);
  u32 total = hits_total(hits);
  int ok = total == want;
  put_str(what);
  put_char(' ');
  if (one_of) {
    /* which CPU takes it is the APIC's choice: only how many is printed */
    put_dec(total);
    put_str(" of ");
    put_dec(bits_set(expect));
  }
  for (u32 i = 0; i < ncpus; i++) {
    u32 in = (expect >> i) & 1;
    ok &= one_of ? hits[i] <= in : hits[i] == in;
    if (!one_of) put_dec(hits[i]);
    hits[i] = 0;
  }
  return ok;
}

static void test_ipi(void) {
  u32 all = (1u << ncpus) - 1, logical = all & 0xff;
  start_command(T_IPI);
  logical_id_on(0);
  if (!wait_for(&ipi_ready, ncpus - 1)) timed_out("ipi", "the CPUs to set their logical IDs");
  sti();
  put_str("ipi: ");
  int ok = ipi_phase("all-but-self", 0, ICR_OTHERS | V_COUNT, all & ~1u, 0, ipi_hits);
  put_str(", ");
  ok &= ipi_phase("all", 0, ICR_ALL | V_COUNT, all, 0, ipi_hits);
  put_str(", ");
  ok &= ipi_phase("self", 0, ICR_SELF | V_COUNT, 1, 0, ipi_hits);
  put_str(", ");
  ok &= ipi_phase("logical-odd", logical & 0xaa, ICR_LOGICAL | V_COUNT, logical & 0xaa, 0, ipi_hits);
  put_str(", ");
  ok &= ipi_phase("broadcast", 0xff, V_COUNT, all, 0, ipi_hits);
  put_str(", ");
  ok &= ipi_phase("lowest-priority", logical & ~1u, ICR_LOGICAL | ICR_LOWEST | V_COUNT, logical & ~1u, 1, ipi_hits);
  put_str(", ");
  ok &= ipi_phase("nmi", apic_ids[1], ICR_NMI, 2, 0, nmi_hits);
  ipi_over = 1;
  send_icr(0, ICR_OTHERS | V_WAKE);
  if (!wait_for(&done, ncpus - 1)) timed_out("ipi", "the CPUs to finish");
  cli();
  put_str(ok ? ": ok\n" : ": FAIL\n");
  finish(ok ? PASS : FAIL);
}

static void test_pingpong(void) {
  start_command(T_PINGPONG);
  sti();
  for (u32 round = 1; round <= count_n; round++) {
    send_ipi(1, V_PING);
    if (!wait_for(&pongs, round)) timed_out("pingpong", "a pong");
  }
  pingpong_over = 1;
  send_ipi(1, V_WAKE);
  if (!wait_for(&done, ncpus - 1)) timed_out("pingpong", "CPU 1 to finish");
  cli();
  put_str("pingpong: ");
  put_dec(count_n);
  put_str(" rounds: CPU 1 took ");
  put_dec(pings);
  put_str(" pings, CPU 0 took ");
  put_dec(pongs);
  put_str(" pongs");
  u32 ok = pings == count_n && pongs == count_n;
  put_str(ok ? ": ok\n" : ": FAIL\n");
  finish(ok ? PASS : FAIL);
}

/* CPU 1's heartbeat holds still for STILL_TICKS: it stopped (a CPU that takes INIT some time after
 * the ICR write, as a QEMU vCPU thread may, is waited for). 0 when it never does. */
static int heartbeat_stops(void) {
  u64 end = rdtsc() + EVENT_TIMEOUT;
  for (;;) {
    u32 seen = heartbeat;
    u64 still = rdtsc() + STILL_TICKS;
    while (heartbeat == seen && rdtsc() < still) pause();
    if (heartbeat == seen) return 1;
    if (rdtsc() > end) return 0;
  }
}

static void test_initsipi(void) {
  start_command(T_INITSIPI);
  if (!wait_for(&heartbeat, 1000)) timed_out("initsipi", "CPU 1 to run");
  send_icr(apic_ids[1], ICR_INIT | ICR_LEVEL | ICR_ASSERT);
  send_icr(apic_ids[1], ICR_INIT | ICR_LEVEL);
  if (!heartbeat_stops()) {
    put_str("initsipi: CPU 1 still runs after INIT: FAIL\n");
    finish(FAIL);
  }
  u32 after_init = heartbeat;
  send_icr(apic_ids[1], ICR_SIPI | (TRAMPOLINE_SECOND >> 12));
  if (!wait_for(&second_runs[1], 1)) timed_out("initsipi", "CPU 1's second entry");
  delay_spins(20000);
  put_str("initsipi: CPU 1 ran from CS ");
  put_hex(boot_cs[1]);
  put_str(", stopped at INIT, ran the second entry from CS ");
  put_hex(second_cs[1]);
  u32 ok = boot_cs[1] == TRAMPOLINE >> 4 && second_cs[1] == TRAMPOLINE_SECOND >> 4 && second_runs[1] == 1 &&
           started[1] == 1 && heartbeat == after_init;
  put_str(ok ? ": ok\n" : ": FAIL\n");
  finish(ok ? PASS : FAIL);
}

static void test_shootdown(void) {
  build_page_tables();
  paging_on();
  u32 cpu0_before = *shootdown_va;
  start_command(T_SHOOTDOWN);
  if (!wait_for(&cpu1_read, 1)) timed_out("shootdown", "CPU 1 to read the page");
  page_table[SHOOT_VA >> 12] = (u32)page_new | 3;
  __asm__ volatile("invlpg (%0)" ::"r"(shootdown_va) : "memory");
  send_ipi(1, V_SHOOTDOWN);
  if (!wait_for(&done, ncpus - 1)) timed_out("shootdown", "CPU 1 to acknowledge");
  u32 cpu0_after = *shootdown_va;
  put_str("shootdown: CPU 1 read ");
  put_hex(cpu1_before);
  put_str(", then ");
  put_hex(cpu1_after);
  put_str(" after the IPI; CPU 0 read ");
  put_hex(cpu0_before);
  put_str(", then ");
  put_hex(cpu0_after);
  u32 ok = cpu1_before == 0xaaaa1111u && cpu1_after == 0xbbbb2222u && cpu0_before == 0xaaaa1111u &&
           cpu0_after == 0xbbbb2222u && shootdown_acks == 1;
  put_str(ok ? ": ok\n" : ": FAIL\n");
  finish(ok ? PASS : FAIL);
}

#define PIT_HZ 1193182u

static void test_ioapic(void) {
  if (!ioapic_base) {
    put_str("ioapic: the MADT lists no I/O APIC\n");
    finish(CANNOT);
  }
  start_command(T_IOAPIC);
  ioapic_write(0x11 + 2 * pit_gsi, apic_ids[1] << 24);
  ioapic_write(0x10 + 2 * pit_gsi, V_IOAPIC); /* fixed, physical, edge, active high, unmasked */
  outb(0x43, 0x34);                           /* channel 0, lobyte/hibyte, mode 2: 1 kHz */
  outb(0x40, (PIT_HZ / 1000) & 0xff);
  outb(0x40, (PIT_HZ / 1000) >> 8);
  sti();
  int arrived = wait_for(&irq_counts[1], count_n);
  cli();
  ioapic_write(0x10 + 2 * pit_gsi, 1u << 16 | V_IOAPIC);
  outb(0x43, 0x30); /* mode 0 without a count: channel 0 waits, no more interrupts */
  if (!arrived) timed_out("ioapic", "CPU 1's interrupts");
  sti();
  delay_spins(20000); /* anything still on its way to CPU 0 arrives now */
  cli();
  ioapic_over = 1;
  send_ipi(1, V_WAKE);
  if (!wait_for(&done, ncpus - 1)) timed_out("ioapic", "CPU 1 to finish");
  u32 cpu0 = irq_counts[0];
  put_str("ioapic: the PIT at GSI ");
  put_dec(pit_gsi);
  put_str(" to CPU 1: CPU 1 took ");
  put_dec(count_n);
  put_str(", CPU 0 took ");
  put_dec(cpu0);
  put_str(cpu0 == 0 ? ": ok\n" : ": FAIL\n");
  finish(cpu0 == 0 ? PASS : FAIL);
}

static const struct {
  const char *name;
  void (*run)(void);
  u32 cpus;
  u32 default_n;
} tests[] = {
    {"xadd", test_xadd, 1, 1000000},   {"spinlock", test_spinlock, 1, 1000000},
    {"pingpong", test_pingpong, 2, 1000}, {"initsipi", test_initsipi, 2, 0},
    {"shootdown", test_shootdown, 2, 0}, {"ioapic", test_ioapic, 2, 20},
    {"compute", test_compute, 1, 1000000}, {"ipi", test_ipi, 2, 0},
};

void kmain(u32 magic, const u32 *mbi) {
  if (magic == 0x2badb002u && (mbi[0] & (1u << 2))) parse_cmdline(phys(mbi[4]));
  build_idt();
  load_idt();
  /* both 8259s masked: a BIOS leaves the PIT on IRQ 0 at vector 8 (QEMU's SeaBIOS does), and the
   * tests take interrupts only from the local and I/O APICs */
  outb(0x21, 0xff);
  outb(0xa1, 0xff);

  const u8 *madt = find_madt();
  if (!madt) {
    put_str("smp: no ACPI MADT (no RSDP in the EBDA or at 0xE0000-0xFFFFF)\n");
    finish(CANNOT);
  }
  u32 listed = read_madt(madt);
  put_str("smp: the ACPI MADT lists ");
  put_dec(listed);
  put_str(listed == 1 ? " CPU, APIC ID" : " CPUs, APIC IDs");
  for (u32 i = 0; i < ncpus; i++) {
    put_char(' ');
    put_dec(apic_ids[i]);
  }
  put_char('\n');

  /* CPU 0 is the BSP, whichever entry lists it */
  int me = cpu_index(my_apic_id());
  if (me < 0) {
    put_str("smp: the BSP's APIC ID is not in the MADT\n");
    finish(CANNOT);
  }
  u32 swap = apic_ids[0];
  apic_ids[0] = apic_ids[me];
  apic_ids[me] = swap;
  if (listed > MAX_CPUS) {
    put_str("smp: using the first ");
    put_dec(MAX_CPUS);
    put_char('\n');
  }

  lapic_enable();
  install_trampoline(TRAMPOLINE, ap_entry32);
  install_trampoline(TRAMPOLINE_SECOND, ap_entry32_second);
  for (u32 cpu = 1; cpu < ncpus; cpu++) {
    if (apic_ids[cpu] >= MAX_CPUS || !start_ap(cpu)) {
      put_str("smp: CPU ");
      put_dec(cpu);
      put_str(" (APIC ID ");
      put_dec(apic_ids[cpu]);
      put_str(") did not start\n");
      finish(CANNOT);
    }
  }
  for (u32 cpu = 1; cpu < ncpus; cpu++) {
    if (started[cpu] != 1 || boot_cs[cpu] != TRAMPOLINE >> 4) {
      put_str("smp: CPU ");
      put_dec(cpu);
      put_str(" started ");
      put_dec(started[cpu]);
      put_str(" times, last at CS ");
      put_hex(boot_cs[cpu]);
      put_str(": FAIL\n");
      finish(FAIL);
    }
  }
  put_str("smp: ");
  put_dec(ncpus);
  put_str(ncpus == 1 ? " CPU running\n" : " CPUs running\n");

  for (u32 i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (!streq(test_name, tests[i].name)) continue;
    if (ncpus < tests[i].cpus) {
      put_str(tests[i].name);
      put_str(": needs 2 CPUs\n");
      finish(CANNOT);
    }
    count_n = n_given ? n_value : tests[i].default_n;
    tests[i].run();
  }
  put_str(test_name[0] ? "smp: unknown test \"" : "smp: no test=");
  put_str(test_name);
  put_str(test_name[0] ? "\"" : "");
  put_str(" (xadd, spinlock, pingpong, initsipi, shootdown, ioapic, compute, ipi)\n");
  finish(CANNOT);
}
