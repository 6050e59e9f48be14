// Reference for apps/bench's "uffd" benchmark: the plain-C floor for cold-touch
// throughput of a userfaultfd region. A handler thread resolves each MISSING
// fault a whole chunk at a time with UFFDIO_COPY from a populated in-memory
// source; the main thread touches one byte per page, in order.
// Usage: uffd-ref <region bytes> <chunk bytes>; prints {"ms": …, "faults": …}.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int uffd;
static uint8_t *region, *source;
static uint64_t size, chunk;
static volatile int done;
static uint64_t faults;

static void *handler(void *unused) {
  struct uffd_msg msgs[64];
  struct pollfd pfd = {uffd, POLLIN, 0};
  while (!done) {
    if (poll(&pfd, 1, 100) <= 0) continue;
    ssize_t n = read(uffd, msgs, sizeof(msgs));
    if (n <= 0) continue;
    for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      faults++;
      uint64_t offset = (msgs[i].arg.pagefault.address - (uint64_t)region) / chunk * chunk;
      uint64_t len = size - offset < chunk ? size - offset : chunk;
      struct uffdio_copy copy = {(uint64_t)region + offset, (uint64_t)source + offset, len, 0, 0};
      if (ioctl(uffd, UFFDIO_COPY, &copy) != 0 && errno == EEXIST) {
        struct uffdio_range range = {(uint64_t)region + offset, len};
        ioctl(uffd, UFFDIO_WAKE, &range);
      }
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size = strtoull(argv[1], NULL, 0);
  chunk = strtoull(argv[2], NULL, 0);
  source = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  memset(source, 0x5a, size);
  region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) { perror("userfaultfd"); return 1; }
  struct uffdio_api api = {UFFD_API, 0, 0};
  struct uffdio_register reg = {{(uint64_t)region, size}, UFFDIO_REGISTER_MODE_MISSING, 0};
  if (ioctl(uffd, UFFDIO_API, &api) || ioctl(uffd, UFFDIO_REGISTER, &reg)) { perror("uffd setup"); return 1; }
  pthread_t thread;
  pthread_create(&thread, NULL, handler, NULL);
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  uint64_t sum = 0;
  for (uint64_t offset = 0; offset < size; offset += 4096) sum += ((volatile uint8_t *)region)[offset];
  clock_gettime(CLOCK_MONOTONIC, &end);
  done = 1;
  pthread_join(thread, NULL);
  double ms = (end.tv_sec - start.tv_sec) * 1e3 + (end.tv_nsec - start.tv_nsec) / 1e6;
  printf("{\"ms\": %.3f, \"faults\": %llu, \"ok\": %s}\n", ms, (unsigned long long)faults,
         sum == size / 4096 * 0x5a ? "true" : "false");
  return 0;
}
