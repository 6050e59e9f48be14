#include "fuse_protocol.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace r3map::fuse {
namespace {

constexpr uint32_t kOurMinor = FUSE_KERNEL_MINOR_VERSION;
// Attributes never change behind the kernel's back: cache them for a day.
constexpr uint64_t kAttrValidSeconds = 86400;

fuse_attr Attr(const FileShape& file, uint64_t ino) {
  fuse_attr a{};
  a.ino = ino;
  a.uid = 0;
  a.gid = 0;
  a.blksize = 4096;
  if (ino == kRootIno) {
    a.mode = S_IFDIR | 0755;
    a.nlink = 2;
  } else {
    a.mode = S_IFREG | (file.mode & 07777);
    a.nlink = 1;
    a.size = file.size;
    a.blocks = (file.size + 511) / 512;
  }
  a.atime = a.mtime = a.ctime = file.time;
  return a;
}

}  // namespace

void Send(int fd, uint64_t unique, int error, const void* data, size_t length) {
  iovec iov[2] = {{nullptr, sizeof(fuse_out_header)}, {const_cast<void*>(data), length}};
  SendV(fd, unique, error, iov, data != nullptr && length > 0 ? 2 : 1);
}

void SendV(int fd, uint64_t unique, int error, iovec* iov, int count) {
  fuse_out_header header{};
  size_t total = sizeof(header);
  for (int i = 1; i < count; i++) total += iov[i].iov_len;
  header.len = static_cast<uint32_t>(error == 0 ? total : sizeof(header));
  header.error = -error;
  header.unique = unique;
  iov[0] = {&header, sizeof(header)};
  // ENOENT: the request was interrupted or the connection aborted; nothing to do.
  while (writev(fd, iov, error == 0 ? count : 1) < 0 && errno == EINTR) {
  }
}

int NotifyInvalidate(int fd, uint64_t offset, int64_t length) {
  fuse_notify_inval_inode_out out{};
  out.ino = kFileIno;
  out.off = static_cast<int64_t>(offset);
  out.len = length;
  fuse_out_header header{};
  header.len = sizeof(header) + sizeof(out);
  header.error = FUSE_NOTIFY_INVAL_INODE;
  header.unique = 0;
  iovec iov[2] = {{&header, sizeof(header)}, {&out, sizeof(out)}};
  ssize_t n;
  while ((n = writev(fd, iov, 2)) < 0 && errno == EINTR) {
  }
  return n < 0 ? errno : 0;
}

void SendEntry(int fd, uint64_t unique, const FileShape& file, uint64_t ino) {
  fuse_entry_out out{};
  out.nodeid = ino;
  out.entry_valid = kAttrValidSeconds;
  out.attr_valid = kAttrValidSeconds;
  out.attr = Attr(file, ino);
  Send(fd, unique, 0, &out, sizeof(out));
}

void SendAttr(int fd, uint64_t unique, const FileShape& file, uint64_t ino) {
  fuse_attr_out out{};
  out.attr_valid = kAttrValidSeconds;
  out.attr = Attr(file, ino);
  Send(fd, unique, 0, &out, sizeof(out));
}

void SendDirectory(int fd, uint64_t unique, const FileShape& file, uint64_t offset, uint32_t size) {
  struct Entry {
    const char* name;
    size_t length;
    uint64_t ino;
    uint32_t type;
  };
  const Entry entries[] = {{".", 1, kRootIno, S_IFDIR >> 12},
                           {"..", 2, kRootIno, S_IFDIR >> 12},
                           {file.name.c_str(), file.name.size(), kFileIno, S_IFREG >> 12}};
  alignas(8) uint8_t out[4096 + 512];
  size_t used = 0;
  for (uint64_t i = offset; i < 3; i++) {
    const Entry& e = entries[i];
    size_t record = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + e.length);
    if (used + record > size || used + record > sizeof(out)) break;
    auto* d = reinterpret_cast<fuse_dirent*>(out + used);
    std::memset(d, 0, record);
    d->ino = e.ino;
    d->off = i + 1;
    d->namelen = static_cast<uint32_t>(e.length);
    d->type = e.type;
    std::memcpy(d->name, e.name, e.length);
    used += record;
  }
  Send(fd, unique, 0, out, used);
}

void SendStatfs(int fd, uint64_t unique, const FileShape& file) {
  fuse_statfs_out out{};
  out.st.bsize = 4096;
  out.st.frsize = 4096;
  out.st.blocks = (file.size + 4095) / 4096;
  out.st.files = 2;
  out.st.namelen = 255;
  Send(fd, unique, 0, &out, sizeof(out));
}

bool SendInit(int fd, uint64_t unique, const fuse_init_in* in) {
  fuse_init_out out{};
  out.major = FUSE_KERNEL_VERSION;
  out.minor = std::min(in->minor, kOurMinor);
  if (in->major != FUSE_KERNEL_VERSION) {
    // The kernel retries with our major if it is newer; anything else fails.
    Send(fd, unique, in->major > FUSE_KERNEL_VERSION ? 0 : EPROTO, &out, sizeof(out));
    return false;
  }
  // ASYNC_DIO: an O_DIRECT aio (a loop device with direct I/O) may have several requests in flight.
  const uint32_t wanted = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_PARALLEL_DIROPS | FUSE_ASYNC_DIO;
  out.flags = in->flags & wanted;
  out.max_readahead = std::min<uint32_t>(in->max_readahead, kMaxWrite);
  out.max_background = 64;
  out.congestion_threshold = 48;
  out.max_write = kMaxWrite;
  out.time_gran = 1;
  out.max_pages = kMaxPages;
  Send(fd, unique, 0, &out, sizeof(out));
  return true;
}

}  // namespace r3map::fuse
