// The FUSE wire for r3map's one-file file system: reply framing, the kernel
// notification that drops cached pages, and the answers to metadata requests
// (one directory holding one regular file of a fixed size). No state: the
// session (fuse_session.h) decides what to answer, this writes it.
#pragma once
#include <linux/fuse.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace r3map::fuse {

constexpr uint64_t kRootIno = FUSE_ROOT_ID;
constexpr uint64_t kFileIno = 2;
constexpr uint32_t kMaxWrite = 1 << 20;
constexpr uint32_t kMaxPages = 256;

// What the one file looks like.
struct FileShape {
  std::string name;
  uint64_t size = 0;
  uint32_t mode = 0600;
  uint64_t time = 0;  // atime, mtime and ctime, in seconds
};

// A reply with `length` bytes of `data` (none on error).
void Send(int fd, uint64_t unique, int error, const void* data, size_t length);
// A reply gathered from iov[1..count); iov[0] is filled with the header here.
void SendV(int fd, uint64_t unique, int error, iovec* iov, int count);

// FUSE_NOTIFY_INVAL_INODE for the file: drops the kernel's cached pages of
// [offset, offset + length) (length <= 0: to the end). Blocks while a page of
// the range is locked by a read in progress. 0 or an errno.
int NotifyInvalidate(int fd, uint64_t offset, int64_t length);

void SendEntry(int fd, uint64_t unique, const FileShape& file, uint64_t ino);
void SendAttr(int fd, uint64_t unique, const FileShape& file, uint64_t ino);
void SendDirectory(int fd, uint64_t unique, const FileShape& file, uint64_t offset, uint32_t size);
void SendStatfs(int fd, uint64_t unique, const FileShape& file);
// Answers INIT; true when the connection is initialised (false: the kernel
// retries with another major version, or it cannot be served).
bool SendInit(int fd, uint64_t unique, const fuse_init_in* in);

}  // namespace r3map::fuse
