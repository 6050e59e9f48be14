#include "fuse_session.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "fuse_mount.h"
#include "thread_priority.h"

namespace r3map::fuse {
namespace {

constexpr size_t kRequestBufferSize = kMaxWrite + 64 * 1024;
// With a local cache, READs of missing chunks up to this size go to the NBD
// server (see HandleRead).
constexpr uint32_t kSmallRemoteRead = 64 * 1024;

}  // namespace

Session::Session(SessionOptions options, DispatchFn dispatch)
    : options_(std::move(options)), cache_(options_.cache), dispatch_(std::move(dispatch)) {}

Session::~Session() {
  Teardown(false);
  CloseChannels();
}

void Session::ReadMissesFrom(int fd, uint32_t timeoutMs, uint32_t minimumBlock, uint32_t maximumBlock) {
  remote_ = std::make_unique<NbdRemoteReader>(
      fd, timeoutMs, minimumBlock, maximumBlock,
      [this](uint32_t channel, uint64_t unique, const uint8_t* data, uint32_t length) {
        Send(fds_[channel], unique, 0, data, length);
      },
      [this](uint32_t channel, uint64_t unique, uint64_t offset, uint32_t length) {
        forwardedReads_.fetch_add(1, std::memory_order_relaxed);
        Forward(channel, Kind::kRead, unique, offset, length, nullptr);
      });
}

// ---- Handing requests to JavaScript --------------------------------------

void Session::Forward(uint32_t channel, Kind kind, uint64_t unique, uint64_t offset, uint32_t length,
                      const uint8_t* data) {
  uint8_t* copy = nullptr;
  if (data != nullptr && length > 0) {
    copy = static_cast<uint8_t*>(std::malloc(length));
    if (copy == nullptr) return SendStatus(channel, unique, ENOMEM);
    std::memcpy(copy, data, length);
  }
  auto* call = new Call{kind, channel, unique, offset, length, copy};
  if (!dispatch_(call)) {
    std::free(copy);
    delete call;
    SendStatus(channel, unique, ENOTCONN);
  }
}

void Session::Notify(Kind kind, uint64_t offset, uint32_t length) {
  auto* call = new Call{kind, 0, 0, offset, length, nullptr};
  if (!dispatch_(call)) delete call;
}

// ---- Request threads -------------------------------------------------------

void Session::Loop(uint32_t channel) {
  r3map::SetThisThreadNice(r3map::kResponsiveNice);
  int fd = fds_[channel];
  std::unique_ptr<uint8_t, decltype(&std::free)> buffer(static_cast<uint8_t*>(aligned_alloc(4096, kRequestBufferSize)),
                                                        &std::free);
  std::unique_ptr<uint8_t, decltype(&std::free)> scratch(
      cache_.fd >= 0 ? static_cast<uint8_t*>(aligned_alloc(4096, kMaxWrite + 4096)) : nullptr, &std::free);
  for (;;) {
    ssize_t n = read(fd, buffer.get(), kRequestBufferSize);
    if (n < 0) {
      // EINTR: signal; EAGAIN: spurious; ENOENT: the request was interrupted.
      if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
      break;  // ENODEV: unmounted or aborted
    }
    if (static_cast<size_t>(n) < sizeof(fuse_in_header)) continue;
    Handle(channel, buffer.get(), static_cast<size_t>(n), scratch.get());
  }
  {
    std::lock_guard<std::mutex> lock(exitMutex_);
    exited_++;
  }
  exitCv_.notify_all();
}

void Session::Handle(uint32_t channel, uint8_t* buffer, size_t length, uint8_t* scratch) {
  int fd = fds_[channel];
  auto* in = reinterpret_cast<const fuse_in_header*>(buffer);
  const uint8_t* arg = buffer + sizeof(fuse_in_header);
  uint64_t unique = in->unique;
  uint64_t node = in->nodeid;
  const FileShape& file = options_.file;
  switch (in->opcode) {
    case FUSE_INIT:
      if (SendInit(fd, unique, reinterpret_cast<const fuse_init_in*>(arg))) {
        {
          std::lock_guard<std::mutex> lock(initMutex_);
          initDone_ = true;
        }
        initCv_.notify_all();
      }
      return;
    case FUSE_LOOKUP: {
      const char* name = reinterpret_cast<const char*>(arg);
      if (node == kRootIno && file.name == name) return SendEntry(fd, unique, file, kFileIno);
      return Send(fd, unique, ENOENT, nullptr, 0);
    }
    case FUSE_GETATTR:
      if (node != kRootIno && node != kFileIno) return Send(fd, unique, ENOENT, nullptr, 0);
      return SendAttr(fd, unique, file, node);
    case FUSE_SETATTR: {
      auto* s = reinterpret_cast<const fuse_setattr_in*>(arg);
      // The size is the resource's size: refuse to change it, accept the rest.
      if (node == kFileIno && (s->valid & FATTR_SIZE) != 0 && s->size != file.size) {
        return Send(fd, unique, EPERM, nullptr, 0);
      }
      return SendAttr(fd, unique, file, node);
    }
    case FUSE_OPEN: {
      auto* o = reinterpret_cast<const fuse_open_in*>(arg);
      if (node != kFileIno) return Send(fd, unique, EISDIR, nullptr, 0);
      if (options_.readOnly && (o->flags & O_ACCMODE) != O_RDONLY) return Send(fd, unique, EROFS, nullptr, 0);
      fuse_open_out out{};
      out.open_flags = options_.directIo ? FOPEN_DIRECT_IO : FOPEN_KEEP_CACHE;
      return Send(fd, unique, 0, &out, sizeof(out));
    }
    case FUSE_OPENDIR: {
      if (node != kRootIno) return Send(fd, unique, ENOTDIR, nullptr, 0);
      fuse_open_out out{};
      return Send(fd, unique, 0, &out, sizeof(out));
    }
    case FUSE_READDIR: {
      auto* r = reinterpret_cast<const fuse_read_in*>(arg);
      return SendDirectory(fd, unique, file, r->offset, r->size);
    }
    case FUSE_READ:
      if (node != kFileIno) return Send(fd, unique, EISDIR, nullptr, 0);
      return HandleRead(channel, unique, reinterpret_cast<const fuse_read_in*>(arg), scratch);
    case FUSE_WRITE: {
      auto* w = reinterpret_cast<const fuse_write_in*>(arg);
      return HandleWrite(channel, unique, w, arg + sizeof(fuse_write_in), length);
    }
    case FUSE_FLUSH:
      if (options_.forwardFlush && node == kFileIno) return Forward(channel, Kind::kFlush, unique, 0, 0, nullptr);
      return Send(fd, unique, 0, nullptr, 0);
    case FUSE_FSYNC:
      if (options_.forwardFsync && node == kFileIno) return Forward(channel, Kind::kFsync, unique, 0, 0, nullptr);
      return Send(fd, unique, 0, nullptr, 0);
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
    case FUSE_FSYNCDIR:
      return Send(fd, unique, 0, nullptr, 0);
    case FUSE_STATFS:
      return SendStatfs(fd, unique, file);
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_INTERRUPT:
      return;  // no reply expected (misses finish on their own)
    case FUSE_DESTROY:
      return Send(fd, unique, 0, nullptr, 0);
    case FUSE_CREATE:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_LINK:
    case FUSE_SYMLINK:
      return Send(fd, unique, EPERM, nullptr, 0);  // the one file is all there is
    default:
      return Send(fd, unique, ENOSYS, nullptr, 0);
  }
}

void Session::HandleRead(uint32_t channel, uint64_t unique, const fuse_read_in* r, uint8_t* scratch) {
  int fd = fds_[channel];
  const uint64_t size = options_.file.size;
  if (r->offset >= size || r->size == 0) return Send(fd, unique, 0, nullptr, 0);
  uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(r->size, size - r->offset));
  const uint8_t access = access_.load(std::memory_order_acquire);
  if (access < kForwardAll && cache_.HasData() && cache_.Present(r->offset, count)) {
    nativeReads_.fetch_add(1, std::memory_order_relaxed);
    return cache_.Reply(fd, unique, r->offset, count, scratch);
  }
  // Over NBD the server answers this thread's request itself (a direct
  // mount; or a managed one, whose cache is then told what to pull next).
  // With a cache, only small reads: their reader waits on latency, and
  // asking the server costs little even if the chunk is on its way. A large
  // read goes to JavaScript, which fetches and stores it once — read here, it
  // would be fetched a second time by the pull.
  if (access < kForwardAll && remote_ && (!cache_.HasData() || count <= kSmallRemoteRead) &&
      remote_->Submit(channel, unique, r->offset, count)) {
    if (cache_.HasData()) Notify(Kind::kRemoteRead, r->offset, count);
    return;
  }
  forwardedReads_.fetch_add(1, std::memory_order_relaxed);
  Forward(channel, Kind::kRead, unique, r->offset, count, nullptr);
}

void Session::HandleWrite(uint32_t channel, uint64_t unique, const fuse_write_in* w, const uint8_t* data,
                          size_t length) {
  int fd = fds_[channel];
  const uint64_t size = options_.file.size;
  if (options_.readOnly) return Send(fd, unique, EROFS, nullptr, 0);
  if (w->offset >= size) return Send(fd, unique, ENOSPC, nullptr, 0);
  if (sizeof(fuse_in_header) + sizeof(fuse_write_in) + w->size > length) return Send(fd, unique, EINVAL, nullptr, 0);
  uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(w->size, size - w->offset));
  const auto becameLocal = [this](uint64_t from, uint32_t bytes) { Notify(Kind::kStoredWhole, from, bytes); };
  if (access_.load(std::memory_order_acquire) == kServe &&
      (cache_.StoreLocal(w->offset, count, data) || cache_.StoreWhole(w->offset, count, data, size, becameLocal))) {
    nativeWrites_.fetch_add(1, std::memory_order_relaxed);
    fuse_write_out out{};
    out.size = count;
    return Send(fd, unique, 0, &out, sizeof(out));
  }
  forwardedWrites_.fetch_add(1, std::memory_order_relaxed);
  Forward(channel, Kind::kWrite, unique, w->offset, count, data);
}

// ---- Mount and teardown ----------------------------------------------------

int Session::Mount(std::string* what) {
  // Held until the threads run, so a concurrent teardown waits for a
  // consistent state instead of racing the setup.
  std::unique_lock<std::mutex> setup(teardownMutex_);
  if (stopping_) {
    *what = "mount (closed before it completed)";
    return ECANCELED;
  }
  if (int err = ClearStaleMount(options_.mountPoint); err != 0) {
    *what = err == EBUSY ? "mount (a live mount already exists at " + options_.mountPoint + ")"
                         : "clear stale mount at " + options_.mountPoint;
    return err;
  }
  int fd = -1;
  if (int err = MountConnection(options_.mountPoint, options_.fsName, &fd, &device_, what); err != 0) return err;
  fds_.push_back(fd);
  for (uint32_t i = 1; i < std::clamp<uint32_t>(options_.threads, 1, 16); i++) {
    int clone = CloneChannel(fd);
    if (clone < 0) break;  // serve with the threads we have
    fds_.push_back(clone);
  }
  for (uint32_t i = 0; i < fds_.size(); i++) workers_.emplace_back([this, i] { Loop(i); });
  running_ = true;
  setup.unlock();
  {
    std::unique_lock<std::mutex> lock(initMutex_);
    if (!initCv_.wait_for(lock, std::chrono::seconds(30), [this] { return initDone_ || stopping_; })) {
      lock.unlock();
      Teardown(true);
      *what = "FUSE INIT from the kernel";
      return ETIMEDOUT;
    }
    if (!initDone_) {
      *what = "mount (closed before it completed)";
      return ECANCELED;
    }
  }
  SetReadAhead(device_, options_.readAheadKb);
  return 0;
}

void Session::Teardown(bool graceful) {
  {
    std::lock_guard<std::mutex> initLock(initMutex_);
    stopping_ = true;
  }
  initCv_.notify_all();
  std::lock_guard<std::mutex> lock(teardownMutex_);
  if (!running_) return;
  bool unmounted = graceful && umount2(options_.mountPoint.c_str(), 0) == 0;
  if (!unmounted) umount2(options_.mountPoint.c_str(), MNT_DETACH);
  // Unmounting the last reference ends the connection and the threads see
  // ENODEV. A file still held open (loop device, open fd) keeps it alive:
  // only an abort ends it, so don't wait long for that case.
  {
    std::unique_lock<std::mutex> exitLock(exitMutex_);
    bool ended = exitCv_.wait_for(exitLock, std::chrono::milliseconds(unmounted ? 2000 : 100),
                                  [this] { return exited_ == workers_.size(); });
    exitLock.unlock();
    if (!ended) AbortConnection(device_);
  }
  for (auto& t : workers_) t.join();
  // After the request threads: no more reads are submitted; the ones still waiting go to JavaScript.
  if (remote_) remote_->Stop();
  exited_ = 0;
  workers_.clear();
  running_ = false;
}

void Session::CloseChannels() {
  for (int fd : fds_) close(fd);
  fds_.clear();
}

// ---- JavaScript's answers --------------------------------------------------

void Session::ReplyRead(uint32_t channel, uint64_t unique, int error, const uint8_t* data, size_t size,
                        uint64_t offset, uint32_t length) {
  if (channel >= fds_.size()) return;
  int fd = fds_[channel];
  if (error != 0) return Send(fd, unique, error, nullptr, 0);
  if (data != nullptr) return Send(fd, unique, 0, data, size);
  if (!cache_.HasData()) return Send(fd, unique, EIO, nullptr, 0);
  std::vector<uint8_t> scratch(cache_.fd >= 0 ? length : 0);
  cache_.Reply(fd, unique, offset, length, scratch.data());
}

void Session::ReplyWrite(uint32_t channel, uint64_t unique, int error, uint32_t written) {
  if (channel >= fds_.size()) return;
  fuse_write_out out{};
  out.size = written;
  Send(fds_[channel], unique, error, &out, sizeof(out));
}

void Session::ReplyStatus(uint32_t channel, uint64_t unique, int error) {
  if (channel < fds_.size()) SendStatus(channel, unique, error);
}

void Session::SetAccess(uint8_t access) {
  access_.store(std::min<uint8_t>(access, kForwardAll), std::memory_order_release);
}

int Session::DuplicateConnection() {
  std::lock_guard<std::mutex> lock(teardownMutex_);
  return running_ && !fds_.empty() ? fcntl(fds_[0], F_DUPFD_CLOEXEC, 0) : -1;
}

SessionStats Session::Stats() const {
  return {nativeReads_.load(),
          forwardedReads_.load(),
          forwardedWrites_.load(),
          nativeWrites_.load(),
          remote_ ? remote_->served() : 0,
          fds_.size()};
}

}  // namespace r3map::fuse
