/* The C peer of bench/kvm-exits: the same guest as run.ts (a real-mode loop doing OUT to port
 * 0xe9), run by a plain KVM_RUN loop, to measure what a port-I/O exit costs without Node.
 * Usage: kvm_exits_c <exits>. Prints one JSON line: {"exits":N,"seconds":S,"cpuSeconds":U,"userSeconds":V,"checksum":C}
 * (seconds: wall clock; cpuSeconds: user+system time of the loop, less disturbed by a busy host;
 * userSeconds: the user-space part of it). */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(double* user) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char* what) {
  fprintf(stderr, "kvm_exits_c: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char** argv) {
  long target = argc > 1 ? atol(argv[1]) : 100000;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
  const size_t mem_size = 0x10000;
  uint8_t* mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  /* mov dx,0xe9; l: inc al; out dx,al; jmp l */
  const uint8_t code[] = {0xba, 0xe9, 0x00, 0xfe, 0xc0, 0xee, 0xeb, 0xfb};
  memcpy(mem + 0x1000, code, sizeof code);
  struct kvm_userspace_memory_region region = {0, 0, 0, mem_size, (uint64_t)(uintptr_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run* run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  struct kvm_segment* segs[] = {&sregs.cs, &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss};
  for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++) {
    segs[i]->base = 0;
    segs[i]->selector = 0;
  }
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = 0x1000;
  regs.rflags = 2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  uint64_t checksum = 0;
  long exits = 0;
  struct timespec t0, t1;
  double user0, user1;
  double cpu0 = cpu_seconds(&user0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (exits < target) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("KVM_RUN");
    }
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0xe9) {
      fprintf(stderr, "kvm_exits_c: unexpected exit %u\n", run->exit_reason);
      return 1;
    }
    checksum += ((uint8_t*)run)[run->io.data_offset];
    exits++;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double cpu = cpu_seconds(&user1) - cpu0;
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("{\"exits\":%ld,\"seconds\":%.6f,\"cpuSeconds\":%.6f,\"userSeconds\":%.6f,\"checksum\":%llu}\n", exits,
         seconds, cpu, user1 - user0, (unsigned long long)checksum);
  return 0;
}
