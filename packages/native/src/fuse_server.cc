// A single-file FUSE file system served straight from /dev/fuse (no libfuse).
//
// The mount shows one directory holding one regular file of a fixed size.
// Native request threads read requests from /dev/fuse (one fd per thread,
// cloned with FUSE_DEV_IOC_CLONE) and:
// - answer metadata requests themselves;
// - answer READs of chunks marked present in the presence bitmap straight
//   from the local cache (SharedArrayBuffer segments, or an fd) with writev:
//   no JavaScript, no allocation;
// - hand every other READ, every WRITE, FLUSH and FSYNC to JavaScript through
//   a thread-safe function and go on reading the next request. JavaScript
//   answers later with reply*(), which writes the reply to the fd the request
//   came from (the kernel keeps in-flight requests per fd).
// So a miss never blocks a request thread, many misses can be outstanding,
// and the JS thread never blocks on the mount (unmounting runs on a native
// thread too).
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fuse_thread_promise.h"
#include "typed_array.h"
#include "module.h"
#include "nbd_remote_reader.h"
#include "shared_bitmap.h"
#include "thread_priority.h"

namespace r3map::fuse {
namespace {

constexpr uint64_t kRootIno = FUSE_ROOT_ID;
constexpr uint64_t kFileIno = 2;
constexpr uint32_t kMaxWrite = 1 << 20;
constexpr uint32_t kMaxPages = 256;
constexpr size_t kRequestBufferSize = kMaxWrite + 64 * 1024;
constexpr uint32_t kOurMinor = FUSE_KERNEL_MINOR_VERSION;
// Attributes never change behind the kernel's back: cache them for a day.
constexpr uint64_t kAttrValidSeconds = 86400;

// What JavaScript is asked to do (mirrors RequestKind in fuse-file.ts).
// kRemoteRead is a notice, not a request: a READ of chunks not in the local
// cache was sent to the NBD server (`remote`); JavaScript answers nothing.
// With a local cache, READs of missing chunks up to this size go to the NBD
// server (see the READ case).
constexpr uint32_t kSmallRemoteRead = 64 * 1024;

// What the request threads may answer themselves (setAccess): everything
// they can (kServe); reads only, every WRITE going to JavaScript
// (kForwardWrites: a migration's seeder refusing writes after its last
// round); nothing, every READ and WRITE going to JavaScript (kForwardAll: a
// leecher whose data is not final yet, where JavaScript holds requests until
// it is).
constexpr uint8_t kServe = 0, kForwardWrites = 1, kForwardAll = 2;

// kStoredWhole too: chunks that were not present were written whole into the
// cache natively and are present now.
enum class Kind : uint8_t { kRead = 0, kWrite = 1, kFlush = 2, kFsync = 3, kRemoteRead = 4, kStoredWhole = 5 };

struct Call {
  Kind kind;
  uint32_t channel;
  uint64_t unique;
  uint64_t offset;
  uint32_t length;
  uint8_t* data;  // WRITE payload (malloc'd; owned by the JS Buffer once handed over)
};

struct LocalCache {
  uint32_t* bitmap = nullptr;  // presence, one bit per chunk (shared_bitmap.h)
  size_t bitmapWords = 0;
  uint64_t chunkSize = 0;
  std::vector<std::pair<uint8_t*, size_t>> segments;  // memory cache
  uint64_t segmentSize = 0;
  int fd = -1;  // or an fd cache
  bool present = false;
  // Written chunks, one bit each (atomic OR after the bytes are stored): set,
  // WRITEs to present chunks are stored here natively and JavaScript finds
  // them in this bitmap instead of being called.
  uint32_t* dirty = nullptr;
  size_t dirtyWords = 0;
  // Chunks being fetched or first written right now, one bit each, taken
  // (test-and-set) by whoever writes them into the cache: WRITEs of whole
  // missing chunks are stored natively only after taking their bits.
  uint32_t* inFlight = nullptr;
  size_t inFlightWords = 0;

  bool HasData() const { return !segments.empty() || fd >= 0; }
};

void CallJs(Napi::Env env, Napi::Function dispatch, void* context, Call* call);
using DispatchFn = Napi::TypedThreadSafeFunction<void, Call, CallJs>;

// Lines of /proc/self/mountinfo for mounts at `path`: "major:minor fstype".
std::vector<std::pair<std::string, std::string>> MountsAt(const std::string& path) {
  std::vector<std::pair<std::string, std::string>> found;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point != path) continue;
    std::string token;
    while (fields >> token && token != "-") {
    }
    std::string fstype;
    fields >> fstype;
    found.emplace_back(dev, fstype);
  }
  return found;
}

// Asks for transparent huge pages on the 2 MiB-aligned interior of a memory
// cache. Replies copy from this memory; with 4 KiB pages the kernel's page
// walks (pinning each source page) cost as much as the copy itself on this
// kind of VM (kernel.md §0). Memory touched later faults in 2 MiB at a time.
void AdviseHugePages(uint8_t* base, size_t length) {
  constexpr uintptr_t kHuge = 2u << 20;
  uintptr_t start = (reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(base) + length) & ~(kHuge - 1);
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
}

bool WriteSmallFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

class Server : public Napi::ObjectWrap<Server> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FuseServer",
                       {
                           InstanceMethod("mount", &Server::Mount),
                           InstanceMethod("replyRead", &Server::ReplyRead),
                           InstanceMethod("replyWrite", &Server::ReplyWrite),
                           InstanceMethod("replyStatus", &Server::ReplyStatus),
                           InstanceMethod("invalidate", &Server::Invalidate),
                           InstanceMethod("setAccess", &Server::SetAccess),
                           InstanceMethod("close", &Server::Close),
                           InstanceMethod("closeSync", &Server::CloseSync),
                           InstanceMethod("stats", &Server::Stats),
                           InstanceMethod("ref", &Server::RefLoop),
                           InstanceMethod("unref", &Server::UnrefLoop),
                       });
  }

  explicit Server(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Server>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    mountPoint_ = o.Get("mountPoint").As<Napi::String>().Utf8Value();
    fileName_ = o.Get("fileName").As<Napi::String>().Utf8Value();
    size_ = static_cast<uint64_t>(o.Get("size").As<Napi::Number>().Int64Value());
    mode_ = o.Get("mode").As<Napi::Number>().Uint32Value();
    readOnly_ = o.Get("readOnly").As<Napi::Boolean>().Value();
    directIo_ = o.Get("directIo").As<Napi::Boolean>().Value();
    forwardFlush_ = o.Get("forwardFlush").As<Napi::Boolean>().Value();
    forwardFsync_ = o.Get("forwardFsync").As<Napi::Boolean>().Value();
    threads_ = std::clamp<uint32_t>(o.Get("threads").As<Napi::Number>().Uint32Value(), 1, 16);
    readAheadKb_ = o.Get("readAheadKb").As<Napi::Number>().Uint32Value();
    fsName_ = o.Get("fsName").As<Napi::String>().Utf8Value();

    Napi::Value local = o.Get("local");
    if (local.IsObject()) {
      Napi::Object l = local.As<Napi::Object>();
      cache_.chunkSize = static_cast<uint64_t>(l.Get("chunkSize").As<Napi::Number>().Int64Value());
      if (!KeepWords(l.Get("bitmap"), &cache_.bitmap, &cache_.bitmapWords)) {
        cache_.present = true;  // no bitmap: everything is local
      }
      Napi::Value segments = l.Get("segments");
      if (segments.IsArray()) {
        Napi::Array a = segments.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) {
          Napi::TypedArray t = a.Get(i).As<Napi::TypedArray>();
          uint8_t* base = TypedArrayBytes(t);
          cache_.segments.emplace_back(base, t.ByteLength());
          if (l.Get("hugePages").ToBoolean()) AdviseHugePages(base, t.ByteLength());
          keep_.push_back(Napi::Persistent(t.As<Napi::Object>()));
        }
        cache_.segmentSize = static_cast<uint64_t>(l.Get("segmentSize").As<Napi::Number>().Int64Value());
      }
      Napi::Value fd = l.Get("fd");
      if (fd.IsNumber()) cache_.fd = fd.As<Napi::Number>().Int32Value();
      KeepWords(l.Get("inFlight"), &cache_.inFlight, &cache_.inFlightWords);
      KeepWords(l.Get("dirty"), &cache_.dirty, &cache_.dirtyWords);
    }
    dispatch_ = DispatchFn::New(env, o.Get("dispatch").As<Napi::Function>(), "r3map-fuse", 0, 1, nullptr);
    dispatchLive_ = true;

    Napi::Value remote = o.Get("remote");
    if (remote.IsObject()) {
      Napi::Object r = remote.As<Napi::Object>();
      // Our own descriptor for the socket: JavaScript closes its handle once this returns.
      int fd = fcntl(r.Get("fd").As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) {
        Napi::Error::New(env, std::string("dup of the NBD socket: ") + std::strerror(errno)).ThrowAsJavaScriptException();
        return;
      }
      remote_ = std::make_unique<r3map::NbdRemoteReader>(
          fd, r.Get("timeoutMs").As<Napi::Number>().Uint32Value(),
          r.Get("minimumBlockSize").As<Napi::Number>().Uint32Value(),
          r.Get("maximumBlockSize").As<Napi::Number>().Uint32Value(),
          [this](uint32_t channel, uint64_t unique, const uint8_t* data, uint32_t length) {
            Send(fds_[channel], unique, 0, data, length);
          },
          [this](uint32_t channel, uint64_t unique, uint64_t offset, uint32_t length) {
            forwardedReads_.fetch_add(1, std::memory_order_relaxed);
            Forward(channel, Kind::kRead, unique, offset, length, nullptr);
          });
    }
  }

  ~Server() override {
    if (dispatchLive_) dispatch_.Release();
  }

  // Called by a request thread for requests it cannot answer itself.
  void Forward(uint32_t channel, Kind kind, uint64_t unique, uint64_t offset, uint32_t length, const uint8_t* data) {
    uint8_t* copy = nullptr;
    if (data != nullptr && length > 0) {
      copy = static_cast<uint8_t*>(std::malloc(length));
      if (copy == nullptr) return SendStatus(channel, unique, ENOMEM);
      std::memcpy(copy, data, length);
    }
    auto* call = new Call{kind, channel, unique, offset, length, copy};
    if (dispatch_.NonBlockingCall(call) != napi_ok) {
      std::free(copy);
      delete call;
      SendStatus(channel, unique, ENOTCONN);
    }
  }

  void SendStatus(uint32_t channel, uint64_t unique, int error) { Send(fds_[channel], unique, error, nullptr, 0); }

  // Tells JavaScript something that needs no answer; dropped if it cannot be queued.
  void Notify(Kind kind, uint64_t offset, uint32_t length) {
    auto* call = new Call{kind, 0, 0, offset, length, nullptr};
    if (dispatch_.NonBlockingCall(call) != napi_ok) delete call;
  }

 private:
  // ---- Replies -------------------------------------------------------------

  static void Send(int fd, uint64_t unique, int error, const void* data, size_t length) {
    iovec iov[2] = {{nullptr, sizeof(fuse_out_header)}, {const_cast<void*>(data), length}};
    SendV(fd, unique, error, iov, data != nullptr && length > 0 ? 2 : 1);
  }

  // iov[0] is reserved for the header.
  static void SendV(int fd, uint64_t unique, int error, iovec* iov, int count) {
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

  bool Present(uint64_t offset, uint64_t length) const {
    if (cache_.bitmap == nullptr) return cache_.present;
    uint64_t first = offset / cache_.chunkSize;
    uint64_t last = (offset + length - 1) / cache_.chunkSize;
    for (uint64_t chunk = first; chunk <= last; chunk++) {
      if (!ChunkPresent(chunk)) return false;
    }
    return true;
  }

  // A shared bitmap given as a typed array: its words, kept alive with the
  // server. False when the option is absent.
  bool KeepWords(Napi::Value value, uint32_t** words, size_t* count) {
    if (!value.IsTypedArray()) return false;
    Napi::TypedArray t = value.As<Napi::TypedArray>();
    *words = reinterpret_cast<uint32_t*>(TypedArrayBytes(t));
    *count = t.ByteLength() / 4;
    keep_.push_back(Napi::Persistent(t.As<Napi::Object>()));
    return true;
  }

  // Stores a WRITE of present chunks in the local cache and marks them
  // written; false when it cannot (then JavaScript gets the write).
  bool StoreLocal(uint64_t offset, uint32_t length, const uint8_t* data) {
    if (cache_.dirty == nullptr || !cache_.HasData() || length == 0 || !Present(offset, length)) return false;
    uint64_t last = (offset + length - 1) / cache_.chunkSize;
    if ((last >> 5) >= cache_.dirtyWords) return false;
    if (!WriteCache(offset, length, data)) return false;
    MarkWritten(offset / cache_.chunkSize, last);
    return true;
  }

  // Stores a WRITE that covers whole chunks, some not present, in the cache:
  // it takes the missing chunks' in-flight bits first (all of them, or it
  // leaves the write to JavaScript), so neither a pull nor a fetch writes them
  // meanwhile; then stores the bytes, marks those chunks present, gives the
  // bits back and tells JavaScript which chunks became local. A chunk written
  // whole needs nothing from the remote.
  bool StoreWhole(uint64_t offset, uint32_t length, const uint8_t* data) {
    if (cache_.dirty == nullptr || cache_.inFlight == nullptr || cache_.bitmap == nullptr || !cache_.HasData() ||
        length == 0) {
      return false;
    }
    const uint64_t end = offset + length;
    if (offset % cache_.chunkSize != 0 || (end % cache_.chunkSize != 0 && end != size_)) return false;
    const uint64_t first = offset / cache_.chunkSize, last = (end - 1) / cache_.chunkSize;
    if ((last >> 5) >= cache_.dirtyWords || (last >> 5) >= cache_.inFlightWords || (last >> 5) >= cache_.bitmapWords) {
      return false;
    }
    std::vector<uint64_t> claimed;
    for (uint64_t chunk = first; chunk <= last; chunk++) {
      if (ChunkPresent(chunk)) continue;
      if (!ClaimBit(chunk)) {
        for (uint64_t taken : claimed) ReleaseBit(taken);
        return false;  // someone is bringing it: JavaScript orders the write after that
      }
      // Present meanwhile (its fetch ended just before our claim): an ordinary write.
      if (ChunkPresent(chunk)) ReleaseBit(chunk);
      else claimed.push_back(chunk);
    }
    if (!WriteCache(offset, length, data)) {
      for (uint64_t taken : claimed) ReleaseBit(taken);
      return false;
    }
    MarkWritten(first, last);
    for (size_t i = 0; i < claimed.size(); i++) {
      // Present before the bit is given back: whoever takes it next sees the chunk there.
      bits::Set(cache_.bitmap, cache_.bitmapWords, claimed[i]);
      ReleaseBit(claimed[i]);
    }
    // One notice per run of chunks that became local.
    for (size_t i = 0; i < claimed.size();) {
      size_t j = i + 1;
      while (j < claimed.size() && claimed[j] == claimed[j - 1] + 1) j++;
      const uint64_t from = claimed[i] * cache_.chunkSize;
      const uint64_t to = std::min<uint64_t>(size_, (claimed[j - 1] + 1) * cache_.chunkSize);
      Notify(Kind::kStoredWhole, from, static_cast<uint32_t>(to - from));
      i = j;
    }
    return true;
  }

  bool ChunkPresent(uint64_t chunk) const { return bits::Test(cache_.bitmap, cache_.bitmapWords, chunk); }

  // Test-and-set of a chunk's in-flight bit: true when this call set it.
  bool ClaimBit(uint64_t chunk) { return bits::TestAndSet(cache_.inFlight, cache_.inFlightWords, chunk); }

  void ReleaseBit(uint64_t chunk) { bits::Clear(cache_.inFlight, cache_.inFlightWords, chunk); }

  // Copies a WRITE's bytes into the cache (memory segments or the fd).
  bool WriteCache(uint64_t offset, uint32_t length, const uint8_t* data) {
    if (!cache_.segments.empty()) {
      uint64_t done = 0;
      while (done < length) {
        uint64_t position = offset + done;
        uint64_t index = position / cache_.segmentSize;
        uint64_t start = position % cache_.segmentSize;
        if (index >= cache_.segments.size()) return false;
        auto [base, bytes] = cache_.segments[index];
        uint64_t take = std::min<uint64_t>(length - done, bytes - start);
        std::memcpy(base + start, data + done, take);
        done += take;
      }
      return true;
    }
    uint32_t done = 0;
    while (done < length) {
      ssize_t n = pwrite(cache_.fd, data + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // JavaScript retries it and reports the error
      done += static_cast<uint32_t>(n);
    }
    return true;
  }

  // The pusher takes these bits (after the bytes).
  void MarkWritten(uint64_t first, uint64_t last) {
    for (uint64_t chunk = first; chunk <= last; chunk++) bits::Set(cache_.dirty, cache_.dirtyWords, chunk);
  }

  // Replies to a READ of [offset, offset+length) from the local cache.
  void SendLocal(int fd, uint64_t unique, uint64_t offset, uint32_t length, uint8_t* scratch) {
    if (!cache_.segments.empty()) {
      iovec iov[8];
      int count = 1;
      uint64_t position = offset;
      uint64_t end = offset + length;
      while (position < end && count < 8) {
        uint64_t index = position / cache_.segmentSize;
        uint64_t start = position % cache_.segmentSize;
        if (index >= cache_.segments.size()) return Send(fd, unique, EIO, nullptr, 0);
        auto [base, bytes] = cache_.segments[index];
        uint64_t take = std::min<uint64_t>(end - position, bytes - start);
        iov[count++] = {base + start, static_cast<size_t>(take)};
        position += take;
      }
      return SendV(fd, unique, 0, iov, count);
    }
    size_t done = 0;
    while (done < length) {
      ssize_t n = pread(cache_.fd, scratch + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Send(fd, unique, errno, nullptr, 0);
      if (n == 0) {  // a shorter cache file reads as zeros
        std::memset(scratch + done, 0, length - done);
        break;
      }
      done += static_cast<size_t>(n);
    }
    Send(fd, unique, 0, scratch, length);
  }

  fuse_attr Attr(uint64_t ino) const {
    fuse_attr a{};
    a.ino = ino;
    a.uid = 0;
    a.gid = 0;
    a.blksize = 4096;
    if (ino == kRootIno) {
      a.mode = S_IFDIR | 0755;
      a.nlink = 2;
    } else {
      a.mode = S_IFREG | (mode_ & 07777);
      a.nlink = 1;
      a.size = size_;
      a.blocks = (size_ + 511) / 512;
    }
    a.atime = a.mtime = a.ctime = startTime_;
    return a;
  }

  void SendEntry(int fd, uint64_t unique, uint64_t ino) {
    fuse_entry_out out{};
    out.nodeid = ino;
    out.entry_valid = kAttrValidSeconds;
    out.attr_valid = kAttrValidSeconds;
    out.attr = Attr(ino);
    Send(fd, unique, 0, &out, sizeof(out));
  }

  void SendAttr(int fd, uint64_t unique, uint64_t ino) {
    fuse_attr_out out{};
    out.attr_valid = kAttrValidSeconds;
    out.attr = Attr(ino);
    Send(fd, unique, 0, &out, sizeof(out));
  }

  void SendDirectory(int fd, uint64_t unique, uint64_t offset, uint32_t size) {
    struct Entry {
      const char* name;
      size_t length;
      uint64_t ino;
      uint32_t type;
    };
    const Entry entries[] = {{".", 1, kRootIno, S_IFDIR >> 12},
                             {"..", 2, kRootIno, S_IFDIR >> 12},
                             {fileName_.c_str(), fileName_.size(), kFileIno, S_IFREG >> 12}};
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

  void SendInit(int fd, uint64_t unique, const fuse_init_in* in) {
    fuse_init_out out{};
    out.major = FUSE_KERNEL_VERSION;
    out.minor = std::min(in->minor, kOurMinor);
    if (in->major != FUSE_KERNEL_VERSION) {
      // The kernel retries with our major if it is newer; anything else fails.
      Send(fd, unique, in->major > FUSE_KERNEL_VERSION ? 0 : EPROTO, &out, sizeof(out));
      return;
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
    {
      std::lock_guard<std::mutex> lock(initMutex_);
      initDone_ = true;
    }
    initCv_.notify_all();
  }

  // ---- Request threads -----------------------------------------------------

  void Handle(uint32_t channel, uint8_t* buffer, size_t length, uint8_t* scratch) {
    int fd = fds_[channel];
    auto* in = reinterpret_cast<const fuse_in_header*>(buffer);
    const uint8_t* arg = buffer + sizeof(fuse_in_header);
    uint64_t unique = in->unique;
    uint64_t node = in->nodeid;
    switch (in->opcode) {
      case FUSE_INIT:
        return SendInit(fd, unique, reinterpret_cast<const fuse_init_in*>(arg));
      case FUSE_LOOKUP: {
        const char* name = reinterpret_cast<const char*>(arg);
        if (node == kRootIno && fileName_ == name) return SendEntry(fd, unique, kFileIno);
        return Send(fd, unique, ENOENT, nullptr, 0);
      }
      case FUSE_GETATTR:
        if (node != kRootIno && node != kFileIno) return Send(fd, unique, ENOENT, nullptr, 0);
        return SendAttr(fd, unique, node);
      case FUSE_SETATTR: {
        auto* s = reinterpret_cast<const fuse_setattr_in*>(arg);
        // The size is the resource's size: refuse to change it, accept the rest.
        if (node == kFileIno && (s->valid & FATTR_SIZE) != 0 && s->size != size_) {
          return Send(fd, unique, EPERM, nullptr, 0);
        }
        return SendAttr(fd, unique, node);
      }
      case FUSE_OPEN: {
        auto* o = reinterpret_cast<const fuse_open_in*>(arg);
        if (node != kFileIno) return Send(fd, unique, EISDIR, nullptr, 0);
        if (readOnly_ && (o->flags & O_ACCMODE) != O_RDONLY) return Send(fd, unique, EROFS, nullptr, 0);
        fuse_open_out out{};
        out.open_flags = directIo_ ? FOPEN_DIRECT_IO : FOPEN_KEEP_CACHE;
        return Send(fd, unique, 0, &out, sizeof(out));
      }
      case FUSE_OPENDIR: {
        if (node != kRootIno) return Send(fd, unique, ENOTDIR, nullptr, 0);
        fuse_open_out out{};
        return Send(fd, unique, 0, &out, sizeof(out));
      }
      case FUSE_READDIR: {
        auto* r = reinterpret_cast<const fuse_read_in*>(arg);
        return SendDirectory(fd, unique, r->offset, r->size);
      }
      case FUSE_READ: {
        auto* r = reinterpret_cast<const fuse_read_in*>(arg);
        if (node != kFileIno) return Send(fd, unique, EISDIR, nullptr, 0);
        if (r->offset >= size_ || r->size == 0) return Send(fd, unique, 0, nullptr, 0);
        uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(r->size, size_ - r->offset));
        const uint8_t access = access_.load(std::memory_order_acquire);
        if (access < kForwardAll && cache_.HasData() && Present(r->offset, count)) {
          nativeReads_.fetch_add(1, std::memory_order_relaxed);
          return SendLocal(fd, unique, r->offset, count, scratch);
        }
        // Over NBD the server answers this thread's request itself (a direct
        // mount; or a managed one, whose cache is then told what to pull next).
        // With a cache, only small reads: their reader waits on latency, and
        // asking the server costs little even if the chunk is on its way. A
        // large read goes to JavaScript, which fetches and stores it once —
        // read here, it would be fetched a second time by the pull.
        if (access < kForwardAll && remote_ && (!cache_.HasData() || count <= kSmallRemoteRead) &&
            remote_->Submit(channel, unique, r->offset, count)) {
          if (cache_.HasData()) Notify(Kind::kRemoteRead, r->offset, count);
          return;
        }
        forwardedReads_.fetch_add(1, std::memory_order_relaxed);
        return Forward(channel, Kind::kRead, unique, r->offset, count, nullptr);
      }
      case FUSE_WRITE: {
        auto* w = reinterpret_cast<const fuse_write_in*>(arg);
        if (readOnly_) return Send(fd, unique, EROFS, nullptr, 0);
        if (w->offset >= size_) return Send(fd, unique, ENOSPC, nullptr, 0);
        const uint8_t* data = arg + sizeof(fuse_write_in);
        if (sizeof(fuse_in_header) + sizeof(fuse_write_in) + w->size > length) {
          return Send(fd, unique, EINVAL, nullptr, 0);
        }
        uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(w->size, size_ - w->offset));
        if (access_.load(std::memory_order_acquire) == kServe &&
            (StoreLocal(w->offset, count, data) || StoreWhole(w->offset, count, data))) {
          nativeWrites_.fetch_add(1, std::memory_order_relaxed);
          fuse_write_out out{};
          out.size = count;
          return Send(fd, unique, 0, &out, sizeof(out));
        }
        forwardedWrites_.fetch_add(1, std::memory_order_relaxed);
        return Forward(channel, Kind::kWrite, unique, w->offset, count, data);
      }
      case FUSE_FLUSH:
        if (forwardFlush_ && node == kFileIno) return Forward(channel, Kind::kFlush, unique, 0, 0, nullptr);
        return Send(fd, unique, 0, nullptr, 0);
      case FUSE_FSYNC:
        if (forwardFsync_ && node == kFileIno) return Forward(channel, Kind::kFsync, unique, 0, 0, nullptr);
        return Send(fd, unique, 0, nullptr, 0);
      case FUSE_RELEASE:
      case FUSE_RELEASEDIR:
      case FUSE_FSYNCDIR:
        return Send(fd, unique, 0, nullptr, 0);
      case FUSE_STATFS: {
        fuse_statfs_out out{};
        out.st.bsize = 4096;
        out.st.frsize = 4096;
        out.st.blocks = (size_ + 4095) / 4096;
        out.st.files = 2;
        out.st.namelen = 255;
        return Send(fd, unique, 0, &out, sizeof(out));
      }
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

  void Loop(uint32_t channel) {
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

  // ---- Mount ---------------------------------------------------------------

  // A FUSE mount at our mount point whose server died answers ENOTCONN:
  // detach it lazily. A live one is someone else's: refuse.
  static int ClearStaleMount(const std::string& path) {
    auto mounts = MountsAt(path);
    if (mounts.empty()) return 0;
    struct stat st;
    if (stat(path.c_str(), &st) == 0) return EBUSY;
    if (errno != ENOTCONN) return errno;
    for (size_t i = 0; i < mounts.size(); i++) {
      if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL) return errno;
    }
    return 0;
  }

  ThreadResult MountOnThread() {
    // Held until the threads run, so a concurrent close waits for a
    // consistent state instead of racing the setup.
    std::unique_lock<std::mutex> setup(teardownMutex_);
    if (stopping_) return ThreadResult::Fail(ECANCELED, "mount (closed before it completed)");
    if (int err = ClearStaleMount(mountPoint_); err != 0) {
      return ThreadResult::Fail(err, err == EBUSY ? "mount (a live mount already exists at " + mountPoint_ + ")"
                                                  : "clear stale mount at " + mountPoint_);
    }
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) return ThreadResult::Fail(errno, "open /dev/fuse");
    std::string options = "fd=" + std::to_string(fd) + ",rootmode=40000,user_id=0,group_id=0,allow_other";
    std::string type = "fuse." + fsName_;
    if (mount(fsName_.c_str(), mountPoint_.c_str(), type.c_str(), MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      int err = errno;
      close(fd);
      return ThreadResult::Fail(err, "mount " + mountPoint_);
    }
    fds_.push_back(fd);
    auto mounts = MountsAt(mountPoint_);
    if (!mounts.empty()) device_ = mounts.back().first;
    for (uint32_t i = 1; i < threads_; i++) {
      int clone = open("/dev/fuse", O_RDWR | O_CLOEXEC);
      uint32_t master = static_cast<uint32_t>(fd);
      if (clone < 0 || ioctl(clone, FUSE_DEV_IOC_CLONE, &master) != 0) {
        if (clone >= 0) close(clone);
        break;  // serve with the threads we have
      }
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
        return ThreadResult::Fail(ETIMEDOUT, "FUSE INIT from the kernel");
      }
      if (!initDone_) return ThreadResult::Fail(ECANCELED, "mount (closed before it completed)");
    }
    if (readAheadKb_ > 0 && !device_.empty()) {
      WriteSmallFile("/sys/class/bdi/" + device_ + "/read_ahead_kb", std::to_string(readAheadKb_));
    }
    std::string device = device_;
    return ThreadResult{0, {}, [device](Napi::Env env) { return Napi::String::New(env, device); }};
  }

  // Aborts the connection through the fuse control file system, mounting it if
  // needed: the only way to wake request threads while the file is still held
  // open (by a loop device, a lazy unmount, a process).
  void AbortConnection() {
    if (device_.empty()) return;
    unsigned major = 0, minor = 0;
    if (std::sscanf(device_.c_str(), "%u:%u", &major, &minor) != 2) return;
    std::string path = "/sys/fs/fuse/connections/" + std::to_string((major << 20) | minor) + "/abort";
    if (!WriteSmallFile(path, "1") && MountsAt("/sys/fs/fuse/connections").empty()) {
      mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);
      WriteSmallFile(path, "1");
    }
  }

  // Unmounts and stops the request threads. graceful: try a plain unmount
  // first (in-flight requests finish); otherwise detach and abort at once.
  void Teardown(bool graceful) {
    {
      std::lock_guard<std::mutex> initLock(initMutex_);
      stopping_ = true;
    }
    initCv_.notify_all();
    std::lock_guard<std::mutex> lock(teardownMutex_);
    if (!running_) return;
    bool unmounted = graceful && umount2(mountPoint_.c_str(), 0) == 0;
    if (!unmounted) umount2(mountPoint_.c_str(), MNT_DETACH);
    // Unmounting the last reference ends the connection and the threads see
    // ENODEV. A file still held open (loop device, open fd) keeps it alive:
    // only an abort ends it, so don't wait long for that case.
    {
      std::unique_lock<std::mutex> exitLock(exitMutex_);
      bool ended = exitCv_.wait_for(exitLock, std::chrono::milliseconds(unmounted ? 2000 : 100),
                                    [this] { return exited_ == workers_.size(); });
      exitLock.unlock();
      if (!ended) AbortConnection();
    }
    for (auto& t : workers_) t.join();
    // After the request threads: no more reads are submitted; the ones still waiting go to JavaScript.
    if (remote_) remote_->Stop();
    exited_ = 0;
    workers_.clear();
    running_ = false;
  }

  // Runs on the JS thread once the request threads are gone.
  void Finish(Napi::Env env) {
    for (int fd : fds_) close(fd);
    fds_.clear();
    if (dispatchLive_) {
      dispatch_.Release();
      dispatchLive_ = false;
    }
    keep_.clear();
    if (cleanupHook_) {
      napi_remove_env_cleanup_hook(env, &Server::OnEnvCleanup, this);
      cleanupHook_ = false;
    }
    if (selfRef_) {
      selfRef_ = false;
      Unref();
    }
  }

  static void OnEnvCleanup(void* self) {
    auto* server = static_cast<Server*>(self);
    server->cleanupHook_ = false;
    server->Teardown(false);
    for (int fd : server->fds_) close(fd);
    server->fds_.clear();
  }

  // ---- JS methods ----------------------------------------------------------

  Napi::Value Mount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (mounted_) {
      Napi::Error::New(env, "already mounted").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    mounted_ = true;
    startTime_ = static_cast<uint64_t>(time(nullptr));
    Ref();
    selfRef_ = true;
    napi_add_env_cleanup_hook(env, &Server::OnEnvCleanup, this);
    cleanupHook_ = true;
    return RunOnThread(env, "r3map-fuse-mount", [this] { return MountOnThread(); });
  }

  // replyRead(channel, unique, errno, data?: Uint8Array, offset, length)
  // Without data, the range is answered from the local cache (JS stored it).
  Napi::Value ReplyRead(const Napi::CallbackInfo& info) {
    uint32_t channel = info[0].As<Napi::Number>().Uint32Value();
    uint64_t unique = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    int error = info[2].As<Napi::Number>().Int32Value();
    if (channel >= fds_.size()) return info.Env().Undefined();
    int fd = fds_[channel];
    if (error != 0) {
      Send(fd, unique, error, nullptr, 0);
    } else if (info[3].IsTypedArray()) {
      Napi::TypedArray t = info[3].As<Napi::TypedArray>();
      uint8_t* base = TypedArrayBytes(t);
      Send(fd, unique, 0, base, t.ByteLength());
    } else if (cache_.HasData()) {
      uint64_t offset = static_cast<uint64_t>(info[4].As<Napi::Number>().Int64Value());
      uint32_t length = info[5].As<Napi::Number>().Uint32Value();
      std::vector<uint8_t> scratch(cache_.fd >= 0 ? length : 0);
      SendLocal(fd, unique, offset, length, scratch.data());
    } else {
      Send(fd, unique, EIO, nullptr, 0);
    }
    return info.Env().Undefined();
  }

  // replyWrite(channel, unique, errno, written)
  Napi::Value ReplyWrite(const Napi::CallbackInfo& info) {
    uint32_t channel = info[0].As<Napi::Number>().Uint32Value();
    uint64_t unique = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    int error = info[2].As<Napi::Number>().Int32Value();
    if (channel >= fds_.size()) return info.Env().Undefined();
    fuse_write_out out{};
    out.size = info[3].As<Napi::Number>().Uint32Value();
    Send(fds_[channel], unique, error, &out, sizeof(out));
    return info.Env().Undefined();
  }

  // replyStatus(channel, unique, errno)
  Napi::Value ReplyStatus(const Napi::CallbackInfo& info) {
    uint32_t channel = info[0].As<Napi::Number>().Uint32Value();
    uint64_t unique = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    int error = info[2].As<Napi::Number>().Int32Value();
    if (channel < fds_.size()) Send(fds_[channel], unique, error, nullptr, 0);
    return info.Env().Undefined();
  }

  // setAccess(kServe | kForwardWrites | kForwardAll): takes effect for
  // requests read after it; those already past the check finish as they were.
  Napi::Value SetAccess(const Napi::CallbackInfo& info) {
    uint32_t access = info[0].As<Napi::Number>().Uint32Value();
    access_.store(static_cast<uint8_t>(std::min<uint32_t>(access, kForwardAll)), std::memory_order_release);
    return info.Env().Undefined();
  }

  // invalidate(offset, length): drops the kernel's cached pages of the file in
  // that range (FUSE_NOTIFY_INVAL_INODE; length 0: to the end), so the next
  // read of it reaches us. The file is opened with FOPEN_KEEP_CACHE, so pages
  // read once are otherwise served by the kernel forever. On a native thread:
  // the kernel waits for pages that are locked, and a page may be locked by a
  // READ that only JavaScript — this thread — can answer.
  Napi::Value Invalidate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t offset = info[0].As<Napi::Number>().Int64Value();
    int64_t length = info[1].As<Napi::Number>().Int64Value();
    int fd = -1;
    {
      std::lock_guard<std::mutex> lock(teardownMutex_);
      // Our own descriptor: the connection's may be closed on this thread meanwhile.
      if (running_ && !fds_.empty()) fd = fcntl(fds_[0], F_DUPFD_CLOEXEC, 0);
    }
    if (fd < 0) return RunOnThread(env, "r3map-fuse-invalidate", [] { return ThreadResult{}; });
    return RunOnThread(env, "r3map-fuse-invalidate", [fd, offset, length] {
      fuse_notify_inval_inode_out out{};
      out.ino = kFileIno;
      out.off = offset;
      out.len = length;
      fuse_out_header header{};
      header.len = sizeof(header) + sizeof(out);
      header.error = FUSE_NOTIFY_INVAL_INODE;
      header.unique = 0;
      iovec iov[2] = {{&header, sizeof(header)}, {&out, sizeof(out)}};
      ssize_t n;
      while ((n = writev(fd, iov, 2)) < 0 && errno == EINTR) {
      }
      int err = n < 0 ? errno : 0;
      close(fd);
      // ENOENT: the kernel holds nothing of the file (never looked up); ENODEV: unmounted meanwhile.
      if (err != 0 && err != ENOENT && err != ENODEV) return ThreadResult::Fail(err, "FUSE_NOTIFY_INVAL_INODE");
      return ThreadResult{};
    });
  }

  // close(): unmounts on a native thread (the JS thread stays free to answer
  // requests the unmount still needs), then releases everything here.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!mounted_ || closing_) return RunOnThread(env, "r3map-fuse-close", [] { return ThreadResult{}; });
    closing_ = true;
    Napi::Promise unmounted = RunOnThread(env, "r3map-fuse-close", [this] {
      Teardown(true);
      return ThreadResult{};
    });
    Napi::Function finish = Napi::Function::New(
        env,
        [this](const Napi::CallbackInfo& i) {
          Finish(i.Env());
          return i.Env().Undefined();
        },
        "finish");
    return unmounted.Get("then").As<Napi::Function>().Call(unmounted, {finish}).As<Napi::Promise>();
  }

  // closeSync(): for process exit; aborts outstanding requests.
  Napi::Value CloseSync(const Napi::CallbackInfo& info) {
    closing_ = true;
    Teardown(false);
    Finish(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("nativeReads", Napi::Number::New(env, static_cast<double>(nativeReads_.load())));
    o.Set("forwardedReads", Napi::Number::New(env, static_cast<double>(forwardedReads_.load())));
    o.Set("forwardedWrites", Napi::Number::New(env, static_cast<double>(forwardedWrites_.load())));
    o.Set("nativeWrites", Napi::Number::New(env, static_cast<double>(nativeWrites_.load())));
    o.Set("remoteReads", Napi::Number::New(env, static_cast<double>(remote_ ? remote_->served() : 0)));
    o.Set("channels", Napi::Number::New(env, static_cast<double>(fds_.size())));
    return o;
  }

  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    if (dispatchLive_) dispatch_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    if (dispatchLive_) dispatch_.Unref(info.Env());
    return info.Env().Undefined();
  }

  std::string mountPoint_, fileName_, fsName_, device_;
  uint64_t size_ = 0;
  uint32_t mode_ = 0600;
  bool readOnly_ = false, directIo_ = false, forwardFlush_ = false, forwardFsync_ = false;
  uint32_t threads_ = 1;
  uint32_t readAheadKb_ = 0;
  uint64_t startTime_ = 0;
  LocalCache cache_;
  std::vector<Napi::ObjectReference> keep_;  // keeps the shared memory alive
  DispatchFn dispatch_;
  bool dispatchLive_ = false;
  std::vector<int> fds_;  // fds_[channel]; closed only on the JS thread
  std::vector<std::thread> workers_;
  std::unique_ptr<r3map::NbdRemoteReader> remote_;
  std::mutex teardownMutex_;
  bool running_ = false, mounted_ = false, closing_ = false, selfRef_ = false, cleanupHook_ = false;
  std::mutex initMutex_;
  std::condition_variable initCv_;
  bool initDone_ = false;
  std::atomic<bool> stopping_{false};  // set once teardown begins; a mount still in progress gives up
  std::mutex exitMutex_;
  std::condition_variable exitCv_;
  size_t exited_ = 0;
  std::atomic<uint64_t> nativeReads_{0}, forwardedReads_{0}, forwardedWrites_{0}, nativeWrites_{0};
  std::atomic<uint8_t> access_{kServe};

  friend void CallJs(Napi::Env, Napi::Function, void*, Call*);
};

// On the JS thread: dispatch(kind, channel, unique, offset, length, data?).
void CallJs(Napi::Env env, Napi::Function dispatch, void*, Call* call) {
  std::unique_ptr<Call> owned(call);
  if (env == nullptr) {
    std::free(call->data);
    return;
  }
  Napi::HandleScope scope(env);
  Napi::Value data = env.Undefined();
  if (call->data != nullptr) {
    data = Napi::Buffer<uint8_t>::New(env, call->data, call->length, [](Napi::Env, uint8_t* p) { std::free(p); });
  }
  dispatch.Call({Napi::Number::New(env, static_cast<double>(call->kind)),
                 Napi::Number::New(env, call->channel), Napi::Number::New(env, static_cast<double>(call->unique)),
                 Napi::Number::New(env, static_cast<double>(call->offset)), Napi::Number::New(env, call->length),
                 data});
  // The TypeScript dispatcher never throws; if it did, the request would hang,
  // so surface the exception instead of swallowing it.
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("FuseServer", Server::Define(env)); }

}  // namespace

R3MAP_MODULE(fuse_server, Init);

}  // namespace r3map::fuse
