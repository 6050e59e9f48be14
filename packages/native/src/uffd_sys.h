// userfaultfd and PAGEMAP_SCAN definitions newer than the Linux 6.1 uapi
// headers this Debian ships (see shared/reference/kernel.md §1). Layouts are
// plain u64 structs and the ioctl numbers come from the _IOWR macros of the
// installed headers, so they are right on every architecture.
#pragma once
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace r3map {

struct UffdioPoison {
  struct uffdio_range range;
  uint64_t mode;
  int64_t updated;
};
constexpr unsigned kUffdioPoisonNr = 0x08;
constexpr unsigned long kUffdioPoison = _IOWR(UFFDIO, kUffdioPoisonNr, UffdioPoison);

// struct pm_scan_arg (Linux 6.7): twelve u64 fields.
struct PmScanArg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
static_assert(sizeof(PmScanArg) == 96, "pm_scan_arg is 12 u64");

struct PageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};

constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kPmScanWpMatching = 1 << 0;
constexpr uint64_t kPmScanCheckWpAsync = 1 << 1;
constexpr uint64_t kPageIsWritten = 1 << 1;

}  // namespace r3map
