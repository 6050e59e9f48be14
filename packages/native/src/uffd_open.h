// Opening a userfaultfd with the features a region needs, and turning the
// ways that fails (no privilege, old kernel) into errors that say what to do.
#pragma once
#include <fcntl.h>
#include <napi.h>

#include <string>

#include "uffd_common.h"
#include "uffd_sys.h"

namespace r3map {

// Opens a non-blocking userfaultfd: the syscall first, then /dev/userfaultfd
// (which works for non-root users given access to the device node).
inline int OpenUffdRaw(int* err) {
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd >= 0) return fd;
  int first = errno;
  if (first == ENOSYS) {
    *err = ENOSYS;
    return -1;
  }
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    *err = errno == ENOENT ? first : errno;
    return -1;
  }
  fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
  *err = errno;
  close(dev);
  return fd;
}

// Features the running kernel offers (probed once on a scratch descriptor,
// because UFFDIO_API may be called only once per descriptor). 0 and `*err` set
// when no userfaultfd can be opened.
inline uint64_t SupportedUffdFeatures(int* err) {
  static std::once_flag once;
  static uint64_t features = 0;
  static int error = 0;
  std::call_once(once, [] {
    int fd = OpenUffdRaw(&error);
    if (fd < 0) return;
    struct uffdio_api api = {UFFD_API, 0, 0};
    if (ioctl(fd, UFFDIO_API, &api) == 0)
      features = api.features;
    else
      error = errno;
    close(fd);
  });
  *err = error;
  return features;
}

inline std::string UffdFeatureNames(uint64_t features) {
  static const char* names[] = {"PAGEFAULT_FLAG_WP", "EVENT_FORK",        "EVENT_REMAP",    "EVENT_REMOVE",
                                "MISSING_HUGETLBFS", "MISSING_SHMEM",     "EVENT_UNMAP",    "SIGBUS",
                                "THREAD_ID",         "MINOR_HUGETLBFS",   "MINOR_SHMEM",    "EXACT_ADDRESS",
                                "WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED",   "POISON",         "WP_ASYNC",
                                "MOVE"};
  std::string out;
  for (unsigned bit = 0; bit < 64; bit++) {
    if (!(features & (uint64_t{1} << bit))) continue;
    if (!out.empty()) out += ", ";
    out += bit < sizeof(names) / sizeof(names[0]) ? std::string("UFFD_FEATURE_") + names[bit] : "bit " + std::to_string(bit);
  }
  return out;
}

inline void ThrowUffdOpenError(Napi::Env env, int err) {
  if (err == EPERM || err == EACCES) {
    ThrowCode(env, "ERR_PERMISSION",
              "userfaultfd is not allowed for this process: run as root (or with CAP_SYS_PTRACE), give this user "
              "read/write access to /dev/userfaultfd, or set the sysctl vm.unprivileged_userfaultfd=1",
              err);
  } else if (err == ENOSYS) {
    ThrowCode(env, "ERR_KERNEL_FEATURE_MISSING",
              "this kernel has no userfaultfd (CONFIG_USERFAULTFD is off): use the file or block-device frontend instead",
              err);
  } else {
    ThrowErrno(env, err, "userfaultfd");
  }
}

// Opens a userfaultfd with exactly `features` enabled, or throws (and returns
// -1) with ERR_PERMISSION / ERR_KERNEL_FEATURE_MISSING / an errno error.
inline int OpenUffd(Napi::Env env, uint64_t features, const char* purpose) {
  int err = 0;
  uint64_t supported = SupportedUffdFeatures(&err);
  if (err != 0) {
    ThrowUffdOpenError(env, err);
    return -1;
  }
  uint64_t missing = features & ~supported;
  if (missing != 0) {
    ThrowCode(env, "ERR_KERNEL_FEATURE_MISSING",
              std::string(purpose) + " needs " + UffdFeatureNames(missing) +
                  ", which this kernel lacks: upgrade to Linux 6.7 or newer, or use the file or block-device frontend");
    return -1;
  }
  int fd = OpenUffdRaw(&err);
  if (fd < 0) {
    ThrowUffdOpenError(env, err);
    return -1;
  }
  struct uffdio_api api = {UFFD_API, features, 0};
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    err = errno;
    close(fd);
    ThrowErrno(env, err, "ioctl(UFFDIO_API)");
    return -1;
  }
  return fd;
}

}  // namespace r3map
