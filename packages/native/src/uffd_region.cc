// JavaScript side of a userfaultfd region: `new UffdRegion(options)` maps and
// registers memory (or adopts another process's registered range), starts the
// native handler thread and routes misses to `onMiss` through a thread-safe
// function. Views are external ArrayBuffers that close() detaches.
#include <fcntl.h>
#include <sys/mman.h>

#include <unordered_map>

#include "module.h"
#include "uffd_open.h"
#include "uffd_region.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace r3map {
namespace {

// Regions by id, so a worker thread can open its own view of a region.
std::mutex registry_mutex;
std::unordered_map<uint32_t, std::weak_ptr<Mapping>> registry;
std::atomic<uint32_t> next_id{1};

bool IsPageMultiple(uint64_t value) {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return value > 0 && value % page == 0;
}

// The bytes behind a TypedArray or Buffer (SharedArrayBuffer-backed included).
bool TypedBytes(Napi::Value value, uint8_t** data, size_t* length) {
  if (!value.IsTypedArray()) return false;
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  napi_typedarray_type type;
  size_t count;
  void* pointer;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(value.Env(), array, &type, &count, &pointer, &buffer, &offset) != napi_ok) return false;
  *data = static_cast<uint8_t*>(pointer);
  *length = array.ByteLength();
  return true;
}

bool ViewRange(const Napi::CallbackInfo& info, size_t first, uint64_t* offset, uint64_t* length);

// Runs on the JavaScript thread that created the region: onMiss(chunk). The
// chunk index travels in the data pointer, so a miss allocates nothing.
// Plain N-API on purpose: if the thread is being terminated (worker exit),
// the call fails and node-addon-api's Call() would abort the process while
// building an Error for it. A JS exception stays pending and is reported by
// Node as uncaught.
void CallMiss(Napi::Env env, Napi::Function callback, void*, uint32_t* data) {
  if (env == nullptr) return;
  napi_value chunk, undefined;
  if (napi_create_uint32(env, static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data)), &chunk) != napi_ok) return;
  if (napi_get_undefined(env, &undefined) != napi_ok) return;
  napi_call_function(env, undefined, callback, 1, &chunk, nullptr);
}
using Tsfn = Napi::TypedThreadSafeFunction<void, uint32_t, &CallMiss>;

class UffdRegionWrap : public Napi::ObjectWrap<UffdRegionWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UffdRegion",
                       {
                           InstanceMethod<&UffdRegionWrap::View>("view"),
                           InstanceMethod<&UffdRegionWrap::Complete>("complete"),
                           InstanceMethod<&UffdRegionWrap::Fill>("fill"),
                           InstanceMethod<&UffdRegionWrap::FillFrom>("fillFrom"),
                           InstanceMethod<&UffdRegionWrap::MapPresent>("mapPresent"),
                           InstanceMethod<&UffdRegionWrap::Evict>("evict"),
                           InstanceMethod<&UffdRegionWrap::SetGated>("setGated"),
                           InstanceMethod<&UffdRegionWrap::ServeMissesFrom>("serveMissesFrom"),
                           InstanceMethod<&UffdRegionWrap::Stats>("stats"),
                           InstanceMethod<&UffdRegionWrap::Close>("close"),
                           InstanceMethod<&UffdRegionWrap::RefLoop>("ref"),
                           InstanceMethod<&UffdRegionWrap::UnrefLoop>("unref"),
                       });
  }

  explicit UffdRegionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UffdRegionWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "UffdRegion needs an options object");
      return;
    }
    Napi::Object options = info[0].As<Napi::Object>();
    RegionConfig config;
    if (!GetSize(options, "size", &config.size) || !IsPageMultiple(config.size) ||
        !GetSize(options, "chunkSize", &config.chunk_size) || !IsPageMultiple(config.chunk_size)) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "size and chunkSize must be positive multiples of the page size");
      return;
    }
    if ((config.size + config.chunk_size - 1) / config.chunk_size > UINT32_MAX) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "too many chunks: use a larger chunkSize");
      return;
    }
    const bool use_memfd = options.Get("memfd").ToBoolean();
    config.continue_mode = options.Get("continue").ToBoolean();
    config.write_protect = options.Get("dirty").ToBoolean();
    const bool serve = !options.Has("serve") || options.Get("serve").ToBoolean();
    Napi::Value on_miss = options.Get("onMiss");
    if (config.continue_mode && !use_memfd) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "continue mode needs a memfd region");
      return;
    }
    if (!ReadCache(env, options, &config)) return;
    const bool has_cache = config.continue_mode || !config.segments.empty() || config.cache_fd >= 0;
    if (serve && !on_miss.IsFunction() && !has_cache) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "a served region needs onMiss, a cache (segments or cacheFd), or both");
      return;
    }

    int uffd;
    Napi::Value adopt = options.Get("adopt");
    if (adopt.IsObject()) {
      uffd = Adopt(env, adopt.As<Napi::Object>(), &config);
    } else {
      uffd = CreateOwn(env, use_memfd, &config);
    }
    if (uffd < 0) {
      if (config.cache_fd >= 0) close(config.cache_fd);
      return;
    }
    core_ = std::make_shared<RegionCore>(uffd, config);

    Napi::Object self = info.This().As<Napi::Object>();
    self.Set("id", Napi::Number::New(env, id_));
    self.Set("address", Napi::Number::New(env, static_cast<double>(config.base)));
    self.Set("size", Napi::Number::New(env, static_cast<double>(config.size)));
    self.Set("chunkSize", Napi::Number::New(env, static_cast<double>(config.chunk_size)));
    self.Set("chunks", Napi::Number::New(env, static_cast<double>(core_->chunks())));
    self.Set("uffd", Napi::Number::New(env, uffd));
    self.Set("memfd", Napi::Number::New(env, memfd_));

    // An open region lives until close(), even if JavaScript drops every
    // reference to it: other threads and processes may still be touching it.
    Ref();
    pinned_ = true;

    if (!serve) return;
    RegionCore::MissFn miss = nullptr;
    if (on_miss.IsFunction()) {
      tsfn_ = Tsfn::New(env, on_miss.As<Napi::Function>(), "r3map-uffd-miss", 0, 1, nullptr);
      has_tsfn_ = true;
      miss = &UffdRegionWrap::OnMiss;
    }
    int err = 0;
    if (!core_->Start(miss, this, &err)) {
      ThrowErrno(env, err, "eventfd");
      Shutdown();
      Unref();
      pinned_ = false;
      return;
    }
    napi_add_env_cleanup_hook(env, &UffdRegionWrap::OnEnvTeardown, this);
    cleanup_hook_ = true;
  }

  ~UffdRegionWrap() override {
    // Garbage-collected without close(): stop serving; the memory stays mapped
    // until the last view is collected.
    if (cleanup_hook_) napi_remove_env_cleanup_hook(Env(), &UffdRegionWrap::OnEnvTeardown, this);
    Shutdown();
    if (mapping_ && id_ != 0) Unregister();
  }

 private:

  // Landed notices travel through the miss callback with this bit set.
  static constexpr uint32_t kLandedFlag = 0x80000000u;

  // On the remote reader's thread: a chunk fetched natively is mapped; tell JavaScript.
  static void OnLanded(void* context, uint32_t chunk) {
    auto* self = static_cast<UffdRegionWrap*>(context);
    auto* data = reinterpret_cast<uint32_t*>(static_cast<uintptr_t>(chunk | kLandedFlag));
    (void)self->tsfn_.NonBlockingCall(data);
  }

  // Runs on the handler thread; must not block.
  static void OnMiss(void* context, uint32_t chunk) {
    auto* self = static_cast<UffdRegionWrap*>(context);
    auto* data = reinterpret_cast<uint32_t*>(static_cast<uintptr_t>(chunk));
    if (self->tsfn_.NonBlockingCall(data) != napi_ok) self->core_->Complete(chunk, false);
  }

  static void OnEnvTeardown(void* context) {
    auto* self = static_cast<UffdRegionWrap*>(context);
    self->cleanup_hook_ = false;
    self->has_tsfn_ = false;  // Node finalizes thread-safe functions itself at teardown
    self->Shutdown();
  }

  // An optional shared bitmap option (a typed array over a SharedArrayBuffer):
  // its words, kept alive with the region. False (thrown) when malformed.
  bool KeepWords(Napi::Env env, Napi::Object options, const char* name, uint32_t** words, size_t* count) {
    Napi::Value value = options.Get(name);
    if (value.IsUndefined()) return true;
    uint8_t* data;
    size_t length;
    if (!TypedBytes(value, &data, &length) || reinterpret_cast<uintptr_t>(data) % 4 != 0) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT",
                std::string(name) + " must be a typed array over the bitmap's SharedArrayBuffer");
      return false;
    }
    *words = reinterpret_cast<uint32_t*>(data);
    *count = length / 4;
    keep_.push_back(Napi::Persistent(value.As<Napi::Object>()));
    return true;
  }

  bool ReadCache(Napi::Env env, Napi::Object options, RegionConfig* config) {
    if (!KeepWords(env, options, "presence", &config->presence, &config->presence_words)) return false;
    if (!KeepWords(env, options, "inFlight", &config->in_flight, &config->in_flight_words)) return false;
    Napi::Value segments = options.Get("segments");
    if (segments.IsArray()) {
      Napi::Array array = segments.As<Napi::Array>();
      for (uint32_t i = 0; i < array.Length(); i++) {
        Napi::Value segment = array.Get(i);
        uint8_t* data;
        size_t length;
        if (!TypedBytes(segment, &data, &length)) {
          ThrowCode(env, "ERR_INVALID_ARGUMENT", "segments must be typed arrays (e.g. MemoryBackend.segments)");
          return false;
        }
        config->segments.push_back({data, length});
        keep_.push_back(Napi::Persistent(segment.As<Napi::Object>()));
      }
    }
    if (options.Get("cacheFd").IsNumber()) {
      // Our own copy: the caller may close theirs while the region is served.
      config->cache_fd = fcntl(options.Get("cacheFd").As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
      if (config->cache_fd < 0) {
        ThrowErrno(env, errno, "cacheFd");
        return false;
      }
      uint64_t offset = 0;
      if (options.Has("cacheOffset") && !GetSize(options, "cacheOffset", &offset)) {
        ThrowCode(env, "ERR_INVALID_ARGUMENT", "cacheOffset must be a non-negative integer");
        close(config->cache_fd);
        return false;
      }
      config->cache_offset = offset;
    }
    return true;
  }

  int CreateOwn(Napi::Env env, bool use_memfd, RegionConfig* config) {
    // THREAD_ID: the last resort against a fault loop is signalling the faulting thread.
    uint64_t features = UFFD_FEATURE_POISON | UFFD_FEATURE_THREAD_ID;
    if (use_memfd) features |= UFFD_FEATURE_MISSING_SHMEM;
    if (config->continue_mode) features |= UFFD_FEATURE_MINOR_SHMEM;
    if (config->write_protect) {
      features |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
      if (use_memfd) features |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    }
    int uffd = OpenUffd(env, features, "a userfaultfd region");
    if (uffd < 0) return -1;

    void* address;
    if (use_memfd) {
      memfd_ = memfd_create("r3map-uffd", MFD_CLOEXEC);
      if (memfd_ < 0 || ftruncate(memfd_, static_cast<off_t>(config->size)) != 0) {
        return Fail(env, uffd, errno, "memfd_create");
      }
      address = mmap(nullptr, config->size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
      config->memfd = memfd_;
    } else {
      address = mmap(nullptr, config->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (address == MAP_FAILED) return Fail(env, uffd, errno, "mmap");
    config->base = reinterpret_cast<uint64_t>(address);
    mapping_ = std::make_shared<Mapping>(address, config->size);

    struct uffdio_register reg = {};
    reg.range = {config->base, config->size};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (config->continue_mode) reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
    if (config->write_protect) reg.mode |= UFFDIO_REGISTER_MODE_WP;
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return Fail(env, uffd, errno, "ioctl(UFFDIO_REGISTER)");
    uint64_t needed = uint64_t{1} << (config->continue_mode ? _UFFDIO_CONTINUE : _UFFDIO_COPY);
    if ((reg.ioctls & needed) != needed) return Fail(env, uffd, ENOTSUP, "ioctl(UFFDIO_REGISTER): no COPY/CONTINUE here");
    if (config->write_protect) {
      // Start clean: every page (populated or not, thanks to WP_UNPOPULATED)
      // write-protected, so the first write to it marks it written.
      struct uffdio_writeprotect wp = {{config->base, config->size}, UFFDIO_WRITEPROTECT_MODE_WP};
      if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) return Fail(env, uffd, errno, "ioctl(UFFDIO_WRITEPROTECT)");
    }
    id_ = next_id.fetch_add(1);
    std::lock_guard<std::mutex> lock(registry_mutex);
    registry[id_] = mapping_;
    return uffd;
  }

  // Serves a range another process registered: takes a copy of its
  // userfaultfd with pidfd_getfd (needs ptrace rights over it, e.g. root).
  int Adopt(Napi::Env env, Napi::Object adopt, RegionConfig* config) {
    uint64_t pid, fd;
    if (!GetSize(adopt, "pid", &pid) || !GetSize(adopt, "fd", &fd) || !GetSize(adopt, "address", &config->base) ||
        config->continue_mode || config->write_protect) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT",
                "adopt needs {pid, fd, address} of a registered region (copy mode, no dirty tracking)");
      return -1;
    }
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
    if (pidfd < 0) {
      ThrowErrno(env, errno, "pidfd_open");
      return -1;
    }
    int uffd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, static_cast<int>(fd), 0));
    int err = errno;
    close(pidfd);
    if (uffd < 0) {
      if (err == EPERM) {
        ThrowCode(env, "ERR_PERMISSION", "cannot take the userfaultfd of that process: run as root or as its parent with ptrace rights", err);
      } else {
        ThrowErrno(env, err, "pidfd_getfd");
      }
      return -1;
    }
    int flags = fcntl(uffd, F_GETFL);
    fcntl(uffd, F_SETFL, flags | O_NONBLOCK);
    return uffd;
  }

  int Fail(Napi::Env env, int uffd, int err, const char* what) {
    close(uffd);
    if (mapping_) {
      mapping_.reset();  // unmaps
    }
    if (memfd_ >= 0) close(memfd_);
    memfd_ = -1;
    ThrowErrno(env, err, what);
    return -1;
  }

  bool CheckOpen(Napi::Env env) {
    if (closed_ || !core_) {
      ThrowCode(env, "ERR_CLOSED", "the region is closed; create a new one");
      return false;
    }
    return true;
  }

  bool ChunkArg(const Napi::CallbackInfo& info, uint32_t* chunk) {
    if (!info[0].IsNumber() || info[0].As<Napi::Number>().DoubleValue() < 0 ||
        info[0].As<Napi::Number>().DoubleValue() >= static_cast<double>(core_->chunks())) {
      ThrowCode(info.Env(), "ERR_OUT_OF_RANGE", "chunk index out of range");
      return false;
    }
    *chunk = info[0].As<Napi::Number>().Uint32Value();
    return true;
  }

  Napi::Value View(const Napi::CallbackInfo& info) {
    if (!CheckOpen(info.Env())) return info.Env().Undefined();
    if (!mapping_) {
      ThrowCode(info.Env(), "ERR_NOT_SUPPORTED", "an adopted region lives in another process: it has no view here");
      return info.Env().Undefined();
    }
    uint64_t offset = 0, length = mapping_->length();
    if (info.Length() >= 2 && !ViewRange(info, 0, &offset, &length)) return info.Env().Undefined();
    return Mapping::View(info.Env(), mapping_, true, offset, length);
  }

  Napi::Value Complete(const Napi::CallbackInfo& info) {
    if (closed_ || !core_) return info.Env().Undefined();  // late answers after close are dropped
    uint32_t chunk;
    if (!ChunkArg(info, &chunk)) return info.Env().Undefined();
    core_->Complete(chunk, info[1].ToBoolean());
    return info.Env().Undefined();
  }

  Napi::Value Fill(const Napi::CallbackInfo& info) { return DoFill(info, false); }
  Napi::Value FillFrom(const Napi::CallbackInfo& info) { return DoFill(info, true); }

  Napi::Value MapPresent(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t first;
    if (!CheckOpen(env) || !ChunkArg(info, &first)) return env.Undefined();
    if (info.Length() < 2 || !info[1].IsNumber() || info[1].As<Napi::Number>().DoubleValue() < 0) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "mapPresent(first, count): count must be a non-negative number");
      return env.Undefined();
    }
    const double requested = info[1].As<Napi::Number>().DoubleValue();
    const uint32_t count = requested > 4294967295.0 ? 4294967295u : static_cast<uint32_t>(requested);
    uint32_t mapped = 0;
    int err = core_->MapPresent(first, count, &mapped);
    if (err == ENODATA) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "mapPresent needs a cache (segments, cacheFd or the memfd)");
      return env.Undefined();
    }
    if (err != 0) {
      ThrowErrno(env, err, "ioctl(UFFDIO_CONTINUE/COPY)");
      return env.Undefined();
    }
    return Napi::Number::New(env, mapped);
  }

  Napi::Value DoFill(const Napi::CallbackInfo& info, bool from_bytes) {
    Napi::Env env = info.Env();
    uint32_t chunk;
    if (!CheckOpen(env) || !ChunkArg(info, &chunk)) return env.Undefined();
    uint8_t* bytes = nullptr;
    size_t length = 0;
    if (from_bytes && !TypedBytes(info[1], &bytes, &length)) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "fillFrom needs the chunk's bytes as a Uint8Array");
      return env.Undefined();
    }
    bool placed = false;
    int err = core_->Fill(chunk, bytes, length, &placed);
    if (err == EINVAL && from_bytes) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "fillFrom needs at least one whole chunk of bytes");
      return env.Undefined();
    }
    if (err == ENODATA) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "fill needs a cache (segments or cacheFd); use fillFrom(chunk, bytes)");
      return env.Undefined();
    }
    if (err != 0) {
      ThrowErrno(env, err, "ioctl(UFFDIO_COPY)");
      return env.Undefined();
    }
    return Napi::Boolean::New(env, placed);
  }

  Napi::Value SetGated(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    core_->SetGated(info[0].ToBoolean());
    return env.Undefined();
  }

  Napi::Value Evict(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t chunk;
    if (!CheckOpen(env) || !ChunkArg(info, &chunk)) return env.Undefined();
    int err = core_->Evict(chunk, mapping_ ? mapping_->address() : nullptr);
    if (err == ENOTSUP) {
      ThrowCode(env, "ERR_NOT_SUPPORTED", "an adopted region can only be evicted by the process that maps it");
    } else if (err != 0) {
      ThrowErrno(env, err, "evict");
    }
    return env.Undefined();
  }

  // serveMissesFrom({fd, timeoutMs, minimumBlockSize, maximumBlockSize}): see RegionCore::ServeMissesFrom.
  Napi::Value ServeMissesFrom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsObject()) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "serveMissesFrom({fd, timeoutMs, minimumBlockSize, maximumBlockSize})");
      return env.Undefined();
    }
    if (!has_tsfn_ || core_->chunks() >= kLandedFlag) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "serveMissesFrom needs a region served with onMiss (under 2^31 chunks)");
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    // Our own descriptor for the socket: JavaScript closes its handle once this returns.
    int fd = fcntl(o.Get("fd").As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      ThrowErrno(env, errno, "dup");
      return env.Undefined();
    }
    int err = core_->ServeMissesFrom(fd, o.Get("timeoutMs").As<Napi::Number>().Uint32Value(),
                                     o.Get("minimumBlockSize").As<Napi::Number>().Uint32Value(),
                                     o.Get("maximumBlockSize").As<Napi::Number>().Uint32Value(), &OnLanded, this);
    if (err != 0) {
      close(fd);
      ThrowCode(env, "ERR_INVALID_ARGUMENT",
                "serveMissesFrom needs a memfd cache (cacheInMemfd) with presence and inFlight bitmaps, once");
    }
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    if (!core_) return out;
    RegionStats& stats = core_->stats();
    auto put = [&](const char* key, const std::atomic<uint64_t>& value) {
      out.Set(key, Napi::Number::New(env, static_cast<double>(value.load(std::memory_order_relaxed))));
    };
    put("faults", stats.faults);
    put("resolvedNatively", stats.resolved_natively);
    put("misses", stats.misses);
    put("failed", stats.failed);
    put("filled", stats.filled);
    put("remoteFetches", stats.remote_fetches);
    return out;
  }

  // While served with onMiss, a region keeps its thread's event loop alive
  // (misses must be answered); unref() lets the thread exit anyway.
  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    if (has_tsfn_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    if (has_tsfn_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (closed_) return info.Env().Undefined();
    closed_ = true;
    if (cleanup_hook_) napi_remove_env_cleanup_hook(info.Env(), &UffdRegionWrap::OnEnvTeardown, this);
    cleanup_hook_ = false;
    Shutdown();
    if (mapping_) {
      Unregister();
      mapping_->Close(info.Env());
    }
    if (memfd_ >= 0) close(memfd_);
    memfd_ = -1;
    for (auto& ref : keep_) ref.Reset();
    keep_.clear();
    if (pinned_) Unref();
    pinned_ = false;
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (core_) core_->Shutdown();
    if (has_tsfn_) tsfn_.Release();
    has_tsfn_ = false;
  }

  void Unregister() {
    std::lock_guard<std::mutex> lock(registry_mutex);
    registry.erase(id_);
  }

  std::shared_ptr<RegionCore> core_;
  std::shared_ptr<Mapping> mapping_;
  std::vector<Napi::ObjectReference> keep_;  // presence bitmap and cache segments stay alive while served
  Tsfn tsfn_;
  bool has_tsfn_ = false;
  bool cleanup_hook_ = false;
  bool closed_ = false;
  bool pinned_ = false;  // strongly referenced until close()
  int memfd_ = -1;
  uint32_t id_ = 0;
};

// (offset, length) arguments at `first`, as integers.
bool ViewRange(const Napi::CallbackInfo& info, size_t first, uint64_t* offset, uint64_t* length) {
  Napi::Object args = Napi::Object::New(info.Env());
  args.Set("offset", info[first]);
  args.Set("length", info[first + 1]);
  if (!GetSize(args, "offset", offset) || !GetSize(args, "length", length)) {
    ThrowCode(info.Env(), "ERR_INVALID_ARGUMENT", "view(offset, length) needs non-negative integers");
    return false;
  }
  return true;
}

// uffdAttachView(id, offset?, length?): a view of a region created on another
// thread of this process. It keeps the memory mapped until it is garbage-collected.
Napi::Value AttachView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  std::shared_ptr<Mapping> mapping;
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = registry.find(id);
    if (it != registry.end()) mapping = it->second.lock();
  }
  if (!mapping) {
    ThrowCode(env, "ERR_CLOSED", "no open region with id " + std::to_string(id) + " in this process");
    return env.Undefined();
  }
  uint64_t offset = 0, length = mapping->length();
  if (info.Length() >= 3 && !ViewRange(info, 1, &offset, &length)) return env.Undefined();
  return Mapping::View(env, mapping, false, offset, length);
}

// uffdFeatures(): what the kernel offers, for feature detection and skips.
Napi::Value Features(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int err = 0;
  uint64_t features = SupportedUffdFeatures(&err);
  Napi::Object out = Napi::Object::New(env);
  out.Set("available", Napi::Boolean::New(env, err == 0));
  if (err != 0) out.Set("errno", Napi::String::New(env, ErrnoName(err)));
  out.Set("features", Napi::Number::New(env, static_cast<double>(features)));
  out.Set("names", Napi::String::New(env, UffdFeatureNames(features)));
  return out;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("UffdRegion", UffdRegionWrap::Define(env));
  exports.Set("uffdAttachView", Napi::Function::New(env, AttachView, "uffdAttachView"));
  exports.Set("uffdFeatures", Napi::Function::New(env, Features, "uffdFeatures"));
}

}  // namespace

R3MAP_MODULE(uffd_region, Init);

}  // namespace r3map
