// A FUSE session for r3map's one-file file system, in plain C++ (the N-API
// wrapper is fuse_server.cc, as uffd_region.cc wraps uffd_region_core.cc).
//
// Request threads read requests from /dev/fuse (one channel per thread,
// cloned with FUSE_DEV_IOC_CLONE) and:
// - answer metadata requests themselves;
// - answer READs of chunks present in the local cache straight from it, and
//   store WRITEs to present chunks (or covering whole missing ones) in it:
//   no JavaScript, no allocation;
// - over NBD, send READs of chunks not in the cache to the server themselves
//   (a handed-over connection);
// - hand every other READ, every WRITE, FLUSH and FSYNC to JavaScript through
//   `dispatch` and go on reading the next request. JavaScript answers later
//   with Reply*(), which writes to the channel the request came from.
// So a miss never blocks a request thread, many misses can be outstanding,
// and the JavaScript thread never blocks on the mount.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fuse_cache.h"
#include "fuse_protocol.h"
#include "nbd_remote_reader.h"

namespace r3map::fuse {

// What JavaScript is asked to do (mirrors FuseRequestKind in fuse-file.ts).
// kRemoteRead and kStoredWhole are notices, not requests: a READ of chunks
// not in the cache was sent to the NBD server; chunks that were not present
// were written whole natively and are present now. Nothing answers them.
enum class Kind : uint8_t { kRead = 0, kWrite = 1, kFlush = 2, kFsync = 3, kRemoteRead = 4, kStoredWhole = 5 };

struct Call {
  Kind kind;
  uint32_t channel;
  uint64_t unique;
  uint64_t offset;
  uint32_t length;
  uint8_t* data;  // WRITE payload (malloc'd; owned by whoever takes the call)
};

// What the request threads answer themselves (SetAccess): everything they
// can (kServe); reads only, every WRITE going to JavaScript (kForwardWrites:
// a migration's seeder refusing writes after its last round); nothing, every
// READ and WRITE going to JavaScript (kForwardAll: a leecher whose data is
// not final yet, where JavaScript holds requests until it is).
constexpr uint8_t kServe = 0, kForwardWrites = 1, kForwardAll = 2;

struct SessionOptions {
  std::string mountPoint;
  std::string fsName;
  FileShape file;
  bool readOnly = false;
  bool directIo = false;
  bool forwardFlush = false;
  bool forwardFsync = false;
  uint32_t threads = 1;
  uint32_t readAheadKb = 0;
  LocalCache cache;
};

struct SessionStats {
  uint64_t nativeReads, forwardedReads, forwardedWrites, nativeWrites, remoteReads, channels;
};

class Session {
 public:
  // Hands a call to JavaScript, taking ownership; false when it cannot (the
  // session then answers the request with ENOTCONN, or drops a notice). Must
  // not block: it runs on request threads.
  using DispatchFn = std::function<bool(Call*)>;

  Session(SessionOptions options, DispatchFn dispatch);
  ~Session();

  // From now on READs of chunks not in the cache (up to kSmallRemoteRead with
  // a cache, all without one) go to this NBD connection (taken over): see
  // NbdRemoteReader. Before Mount.
  void ReadMissesFrom(int fd, uint32_t timeoutMs, uint32_t minimumBlock, uint32_t maximumBlock);

  // Mounts, starts the request threads and waits for the kernel's INIT.
  // Blocking: call it on a native thread. 0, or an errno with `*what`.
  int Mount(std::string* what);
  // Unmounts and stops the request threads: graceful tries a plain unmount
  // first (in-flight requests finish); otherwise detach and abort at once.
  void Teardown(bool graceful);
  // Closes the channels once the threads are gone.
  void CloseChannels();

  // JavaScript's answers to forwarded requests. ReplyRead without data
  // answers from the local cache (JavaScript stored the range).
  void ReplyRead(uint32_t channel, uint64_t unique, int error, const uint8_t* data, size_t size, uint64_t offset,
                 uint32_t length);
  void ReplyWrite(uint32_t channel, uint64_t unique, int error, uint32_t written);
  void ReplyStatus(uint32_t channel, uint64_t unique, int error);

  // Takes effect for requests read after it.
  void SetAccess(uint8_t access);
  // A descriptor of the connection of its own (for a notification sent from
  // another thread), or -1 when not mounted. The caller closes it.
  int DuplicateConnection();
  const std::string& device() const { return device_; }
  SessionStats Stats() const;

 private:
  void Loop(uint32_t channel);
  void Handle(uint32_t channel, uint8_t* buffer, size_t length, uint8_t* scratch);
  void HandleRead(uint32_t channel, uint64_t unique, const fuse_read_in* r, uint8_t* scratch);
  void HandleWrite(uint32_t channel, uint64_t unique, const fuse_write_in* w, const uint8_t* data, size_t length);
  void Forward(uint32_t channel, Kind kind, uint64_t unique, uint64_t offset, uint32_t length, const uint8_t* data);
  void Notify(Kind kind, uint64_t offset, uint32_t length);
  void SendStatus(uint32_t channel, uint64_t unique, int error) { Send(fds_[channel], unique, error, nullptr, 0); }

  SessionOptions options_;
  LocalCache& cache_;  // options_.cache
  DispatchFn dispatch_;
  std::string device_;
  std::vector<int> fds_;  // fds_[channel]; closed by CloseChannels
  std::vector<std::thread> workers_;
  std::unique_ptr<NbdRemoteReader> remote_;
  std::mutex teardownMutex_;
  bool running_ = false;
  std::mutex initMutex_;
  std::condition_variable initCv_;
  bool initDone_ = false;
  std::atomic<bool> stopping_{false};  // set once teardown begins; a mount still in progress gives up
  std::mutex exitMutex_;
  std::condition_variable exitCv_;
  size_t exited_ = 0;
  std::atomic<uint64_t> nativeReads_{0}, forwardedReads_{0}, forwardedWrites_{0}, nativeWrites_{0};
  std::atomic<uint8_t> access_{kServe};
};

}  // namespace r3map::fuse
