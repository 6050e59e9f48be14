// Dirty tracking for userfaultfd regions registered with WP_ASYNC: one
// PAGEMAP_SCAN ioctl on /proc/self/pagemap returns the pages written since the
// last scan and write-protects them again, atomically per page.
#include <fcntl.h>

#include "module.h"
#include "uffd_common.h"
#include "uffd_sys.h"

namespace r3map {
namespace {

int PagemapFd(int* err) {
  static std::once_flag once;
  static int fd = -1;
  static int error = 0;
  std::call_once(once, [] {
    fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) error = errno;
  });
  *err = error;
  return fd;
}

// pagemapScanWritten(address, length, reprotect = true): the written ranges
// as a Float64Array of [start, end) byte-offset pairs relative to `address`,
// adjacent ranges merged.
Napi::Value ScanWritten(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = Napi::Object::New(env);
  args.Set("address", info[0]);
  args.Set("length", info[1]);
  uint64_t address, length;
  if (!GetSize(args, "address", &address) || !GetSize(args, "length", &length)) {
    ThrowCode(env, "ERR_INVALID_ARGUMENT", "pagemapScanWritten(address, length) needs integers");
    return env.Undefined();
  }
  const bool reprotect = info.Length() < 3 || info[2].ToBoolean();
  int err = 0;
  int fd = PagemapFd(&err);
  if (fd < 0) {
    ThrowErrno(env, err, "open(/proc/self/pagemap)");
    return env.Undefined();
  }
  constexpr size_t kVec = 512;
  PageRegion vec[kVec];
  std::vector<double> out;
  uint64_t start = address, end = address + length;
  while (start < end) {
    PmScanArg arg = {};
    arg.size = sizeof(arg);
    arg.flags = kPmScanCheckWpAsync | (reprotect ? kPmScanWpMatching : 0);
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec);
    arg.vec_len = kVec;
    arg.category_mask = kPageIsWritten;
    arg.return_mask = kPageIsWritten;
    int n = ioctl(fd, kPagemapScan, &arg);
    if (n < 0) {
      int e = errno;
      if (e == ENOTTY || e == EINVAL) {
        ThrowCode(env, "ERR_KERNEL_FEATURE_MISSING",
                  "PAGEMAP_SCAN with WP_ASYNC is not available for this range: it needs Linux 6.7+ and a region "
                  "created with dirty tracking",
                  e);
      } else if (e == EPERM) {
        ThrowCode(env, "ERR_INVALID_ARGUMENT", "the range is not registered for asynchronous write-protect", e);
      } else {
        ThrowErrno(env, e, "ioctl(PAGEMAP_SCAN)");
      }
      return env.Undefined();
    }
    for (int i = 0; i < n; i++) {
      double s = static_cast<double>(vec[i].start - address), e = static_cast<double>(vec[i].end - address);
      if (!out.empty() && out.back() == s) {
        out.back() = e;
      } else {
        out.push_back(s);
        out.push_back(e);
      }
    }
    if (arg.walk_end <= start || arg.walk_end >= end) break;
    start = arg.walk_end;
  }
  Napi::Float64Array result = Napi::Float64Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) result[i] = out[i];
  return result;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("pagemapScanWritten", Napi::Function::New(env, ScanWritten, "pagemapScanWritten"));
}

}  // namespace

R3MAP_MODULE(pagemap_scan, Init);

}  // namespace r3map
