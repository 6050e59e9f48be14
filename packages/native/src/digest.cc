// digestChunks(source, out, options): per-chunk digests of a range of a local
// resource, computed on native threads — one per core — and resolved as a
// Promise on the JS thread.
//
// The source is a file or block device (an fd, read with pread into a small
// per-thread buffer that stays in the CPU cache, or with O_DIRECT for a cold
// device that should not evict the page cache) or memory (segments laid end
// to end: a MemoryBackend's, a Buffer, a userfaultfd region's view). The
// bytes to hash are spans [offset, offset + length), each cut into chunks of
// chunkSize from its start (the last one may be shorter); the digests of all
// spans' chunks are written one after the other.
//
// Algorithms: XXH3-128 (fast, for comparison; libxxhash's runtime-dispatched
// AVX2/AVX-512 code on x86-64, the same xxhsum runs) and BLAKE3 (the official
// C implementation with its SIMD assembly; for an end-to-end check). Digests
// are written in canonical byte order (XXH3-128 big-endian, as xxhsum prints
// it; BLAKE3's bytes as b3sum prints them), 16 or 32 bytes per chunk, into
// `out`, which the caller allocates.
//
// Never the libuv threadpool, which threads blocked on a mount can exhaust,
// and never the JS thread: hashing a gigabyte takes a few hundred ms.
#include <fcntl.h>
#include <napi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#else
#include <xxhash.h>
#endif

extern "C" {
#include "blake3.h"
}

#include "fuse_thread_promise.h"
#include "module.h"
#include "typed_array.h"

namespace {

enum Algorithm : int { kXxh3_128 = 0, kBlake3 = 1 };

constexpr size_t DigestBytes(Algorithm algorithm) { return algorithm == kXxh3_128 ? 16 : 32; }

// Bytes read per pread: small enough to stay in L2 while it is hashed right
// after (the kernel's copy and the hash then share the cache), large enough
// that system calls do not count.
constexpr uint64_t kReadBytes = 256u << 10;
// Work is handed out in units of whole chunks of at least this many bytes,
// so each thread reads long sequential stretches.
constexpr uint64_t kUnitBytes = 4u << 20;
constexpr uint64_t kDirectAlign = 4096;

// A streaming hash of one algorithm.
class Hasher {
 public:
  explicit Hasher(Algorithm algorithm) : algorithm_(algorithm) {
    if (algorithm_ == kXxh3_128) xxh_ = XXH3_createState();
  }
  ~Hasher() {
    if (xxh_ != nullptr) XXH3_freeState(xxh_);
  }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  bool ok() const { return algorithm_ != kXxh3_128 || xxh_ != nullptr; }

  void Reset() {
    if (algorithm_ == kXxh3_128)
      XXH3_128bits_reset(xxh_);
    else
      blake3_hasher_init(&blake3_);
  }
  void Update(const uint8_t* data, size_t length) {
    if (algorithm_ == kXxh3_128)
      XXH3_128bits_update(xxh_, data, length);
    else
      blake3_hasher_update(&blake3_, data, length);
  }
  void Finish(uint8_t* out) {
    if (algorithm_ == kXxh3_128) {
      XXH128_canonical_t canonical;
      XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(xxh_));
      std::memcpy(out, canonical.digest, 16);
    } else {
      blake3_hasher_finalize(&blake3_, out, BLAKE3_OUT_LEN);
    }
  }
  // The whole input at once: XXH3's one-shot form is faster for small chunks.
  void OneShot(const uint8_t* data, size_t length, uint8_t* out) {
    if (algorithm_ == kXxh3_128) {
      XXH128_canonical_t canonical;
      XXH128_canonicalFromHash(&canonical, XXH3_128bits(data, length));
      std::memcpy(out, canonical.digest, 16);
    } else {
      blake3_hasher_init(&blake3_);
      blake3_hasher_update(&blake3_, data, length);
      blake3_hasher_finalize(&blake3_, out, BLAKE3_OUT_LEN);
    }
  }

 private:
  Algorithm algorithm_;
  XXH3_state_t* xxh_ = nullptr;
  blake3_hasher blake3_;
};

struct Segment {
  const uint8_t* data;
  uint64_t length;
};

// Bytes [offset, offset + length) of the source, cut into chunks from offset.
struct Span {
  uint64_t offset;
  uint64_t length;
  uint64_t firstChunk;  // index of its first chunk among all spans' chunks
  uint64_t firstUnit;   // index of its first work unit among all spans' units
};

struct Job {
  Algorithm algorithm;
  std::vector<Span> spans;
  uint64_t chunkSize;
  uint64_t chunks = 0;  // over all spans
  uint64_t units = 0;   // over all spans
  uint64_t perUnit = 1; // chunks per work unit
  uint8_t* out;         // chunks * DigestBytes(algorithm)
  int fd = -1;          // a file source (owned: a dup)
  bool direct = false;  // read with O_DIRECT (fd opened so by the caller)
  std::vector<Segment> segments;         // a memory source, laid end to end
  std::vector<uint64_t> segmentStarts;   // where each segment starts in the source
  std::atomic<int32_t>* cancel = nullptr;
  std::atomic<uint64_t> nextUnit{0};
  std::atomic<int> error{0};
  const char* failedCall = "";

  ~Job() {
    if (fd >= 0) close(fd);
  }

  bool Cancelled() const { return cancel != nullptr && cancel->load(std::memory_order_relaxed) != 0; }

  void Fail(int err, const char* call) {
    int expected = 0;
    if (error.compare_exchange_strong(expected, err)) failedCall = call;
  }
};

// The segment holding byte `at` of a memory source, or -1.
int64_t SegmentAt(const Job& job, uint64_t at) {
  auto next = std::upper_bound(job.segmentStarts.begin(), job.segmentStarts.end(), at);
  if (next == job.segmentStarts.begin()) return -1;
  const int64_t index = (next - job.segmentStarts.begin()) - 1;
  return at - job.segmentStarts[index] < job.segments[index].length ? index : -1;
}

// Calls `consume(pointer, length)` for the bytes [at, at + length) of a memory
// source, piece by piece where the range crosses segments.
template <typename Consume>
bool ForMemory(const Job& job, uint64_t at, uint64_t length, Consume consume) {
  while (length > 0) {
    const int64_t index = SegmentAt(job, at);
    if (index < 0) return false;
    const Segment& segment = job.segments[index];
    const uint64_t within = at - job.segmentStarts[index];
    const uint64_t n = std::min(length, segment.length - within);
    consume(segment.data + within, n);
    at += n;
    length -= n;
  }
  return true;
}

// Reads exactly [at, at + length) of the fd into `buffer` (aligned for O_DIRECT).
// A read past the end of the file is an error: the caller asked for a range the
// file does not have.
bool ReadFully(Job& job, uint8_t* buffer, uint64_t at, uint64_t length) {
  uint64_t done = 0;
  while (done < length) {
    uint64_t want = length - done;
    uint64_t from = at + done;
    // O_DIRECT needs aligned offsets and lengths: read whole blocks, use what was asked.
    if (job.direct) want = (want + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    ssize_t got = pread(job.fd, buffer + done, want, static_cast<off_t>(from));
    if (got < 0) {
      if (errno == EINTR) continue;
      job.Fail(errno, "pread");
      return false;
    }
    if (got == 0) {
      job.Fail(ENODATA, "pread");
      return false;
    }
    done += std::min<uint64_t>(static_cast<uint64_t>(got), length - done);
  }
  return true;
}

// Hashes chunks [first, end) of a span on this thread (indexes within the span).
void HashUnit(Job& job, const Span& span, Hasher& hasher, uint8_t* buffer, uint64_t bufferBytes, uint64_t first,
              uint64_t end) {
  const size_t digestBytes = DigestBytes(job.algorithm);
  const uint64_t rangeEnd = span.offset + span.length;
  uint8_t* const out = job.out + span.firstChunk * digestBytes;
  if (job.fd < 0) {
    for (uint64_t chunk = first; chunk < end && !job.Cancelled(); chunk++) {
      const uint64_t at = span.offset + chunk * job.chunkSize;
      const uint64_t length = std::min(job.chunkSize, rangeEnd - at);
      const int64_t index = SegmentAt(job, at);
      // Within one segment: one call over the whole chunk.
      if (index >= 0 && at - job.segmentStarts[index] + length <= job.segments[index].length) {
        hasher.OneShot(job.segments[index].data + (at - job.segmentStarts[index]), length, out + chunk * digestBytes);
        continue;
      }
      hasher.Reset();
      if (!ForMemory(job, at, length, [&](const uint8_t* p, uint64_t n) { hasher.Update(p, n); })) {
        job.Fail(EFAULT, "digest: the range is outside the memory");
        return;
      }
      hasher.Finish(out + chunk * digestBytes);
    }
    return;
  }
  // A file: read whole runs of chunks at once when chunks are small, and
  // stream chunks larger than the buffer through the hash piece by piece.
  if (job.chunkSize <= bufferBytes) {
    const uint64_t perRead = bufferBytes / job.chunkSize;
    for (uint64_t chunk = first; chunk < end && !job.Cancelled(); chunk += perRead) {
      const uint64_t last = std::min(end, chunk + perRead);
      const uint64_t at = span.offset + chunk * job.chunkSize;
      const uint64_t length = std::min(rangeEnd, span.offset + last * job.chunkSize) - at;
      if (!ReadFully(job, buffer, at, length)) return;
      for (uint64_t c = chunk; c < last; c++) {
        const uint64_t within = (c - chunk) * job.chunkSize;
        hasher.OneShot(buffer + within, std::min(job.chunkSize, length - within), out + c * digestBytes);
      }
    }
    return;
  }
  for (uint64_t chunk = first; chunk < end && !job.Cancelled(); chunk++) {
    const uint64_t at = span.offset + chunk * job.chunkSize;
    const uint64_t length = std::min(job.chunkSize, rangeEnd - at);
    hasher.Reset();
    for (uint64_t done = 0; done < length;) {
      const uint64_t n = std::min(bufferBytes, length - done);
      if (!ReadFully(job, buffer, at + done, n)) return;
      hasher.Update(buffer, n);
      done += n;
    }
    hasher.Finish(out + chunk * digestBytes);
  }
}

void Work(Job& job) {
  Hasher hasher(job.algorithm);
  if (!hasher.ok()) {
    job.Fail(ENOMEM, "XXH3_createState");
    return;
  }
  uint8_t* buffer = nullptr;
  const uint64_t bufferBytes = kReadBytes;
  if (job.fd >= 0) {
    // Room for a rounded-up O_DIRECT read past the last wanted byte.
    if (posix_memalign(reinterpret_cast<void**>(&buffer), kDirectAlign, bufferBytes + kDirectAlign) != 0) {
      job.Fail(ENOMEM, "posix_memalign");
      return;
    }
  }
  for (;;) {
    if (job.error.load(std::memory_order_relaxed) != 0 || job.Cancelled()) break;
    const uint64_t unit = job.nextUnit.fetch_add(1, std::memory_order_relaxed);
    if (unit >= job.units) break;
    // The span holding this unit: the last one starting at or before it.
    auto next = std::upper_bound(job.spans.begin(), job.spans.end(), unit,
                                 [](uint64_t u, const Span& s) { return u < s.firstUnit; });
    const Span& span = *(next - 1);
    const uint64_t spanChunks = (span.length + job.chunkSize - 1) / job.chunkSize;
    const uint64_t first = (unit - span.firstUnit) * job.perUnit;
    HashUnit(job, span, hasher, buffer, bufferBytes, first, std::min(spanChunks, first + job.perUnit));
  }
  free(buffer);
}

bool GetUint(Napi::Object options, const char* name, uint64_t* out) {
  Napi::Value value = options.Get(name);
  if (!value.IsNumber()) return false;
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0) || number > 9007199254740991.0 || number != static_cast<double>(static_cast<uint64_t>(number)))
    return false;
  *out = static_cast<uint64_t>(number);
  return true;
}

Napi::Value Invalid(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARGUMENT"));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

// digestChunks(options): options = {
//   fd?: number, direct?: boolean            — a file or block device, or
//   segments?: Uint8Array[]                  — memory laid end to end,
//   spans: Float64Array (offset, length pairs), chunkSize, algorithm (0 XXH3-128, 1 BLAKE3), threads,
//   out: Uint8Array (chunks × digest bytes), cancel?: Int32Array (shared)
// } → Promise<void>
Napi::Value DigestChunks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Invalid(env, "digestChunks(options: object)");
  Napi::Object options = info[0].As<Napi::Object>();
  auto job = std::make_shared<Job>();
  uint64_t algorithm = 0, threads = 1;
  if (!GetUint(options, "chunkSize", &job->chunkSize) || job->chunkSize == 0 ||
      !GetUint(options, "algorithm", &algorithm) || algorithm > 1 || !GetUint(options, "threads", &threads) ||
      threads == 0 || !options.Get("spans").IsTypedArray()) {
    return Invalid(env, "digestChunks: spans (Float64Array), chunkSize (> 0), algorithm (0 or 1) and threads (> 0) are required");
  }
  job->algorithm = static_cast<Algorithm>(algorithm);
  job->perUnit = std::max<uint64_t>(1, kUnitBytes / job->chunkSize);
  auto spans = options.Get("spans").As<Napi::TypedArray>();
  if (spans.TypedArrayType() != napi_float64_array || spans.ElementLength() % 2 != 0)
    return Invalid(env, "digestChunks: spans must be a Float64Array of offset, length pairs");
  const double* pairs = reinterpret_cast<const double*>(r3map::TypedArrayBytes(spans));
  uint64_t spanEnd = 0;
  for (size_t i = 0; i < spans.ElementLength(); i += 2) {
    const double offset = pairs[i], length = pairs[i + 1];
    if (!(offset >= 0) || !(length > 0) || offset + length > 9007199254740991.0 ||
        offset != static_cast<double>(static_cast<uint64_t>(offset)) ||
        length != static_cast<double>(static_cast<uint64_t>(length)))
      return Invalid(env, "digestChunks: every span needs a non-negative integer offset and a positive length");
    Span span{static_cast<uint64_t>(offset), static_cast<uint64_t>(length), job->chunks, job->units};
    const uint64_t chunks = (span.length + job->chunkSize - 1) / job->chunkSize;
    job->chunks += chunks;
    job->units += (chunks + job->perUnit - 1) / job->perUnit;
    spanEnd = std::max(spanEnd, span.offset + span.length);
    job->spans.push_back(span);
  }
  if (!options.Get("out").IsTypedArray()) return Invalid(env, "digestChunks: out must be a Uint8Array");
  auto out = options.Get("out").As<Napi::TypedArray>();
  if (out.ByteLength() < job->chunks * DigestBytes(job->algorithm))
    return Invalid(env, "digestChunks: out is too small for the digests of the range");
  job->out = r3map::TypedArrayBytes(out);
  // Everything JavaScript owns stays referenced until the promise settles.
  auto keep = std::make_shared<std::vector<Napi::Reference<Napi::Value>>>();
  keep->push_back(Napi::Persistent(options.Get("out")));
  if (options.Get("cancel").IsTypedArray()) {
    auto cancel = options.Get("cancel").As<Napi::TypedArray>();
    if (cancel.TypedArrayType() != napi_int32_array) return Invalid(env, "digestChunks: cancel must be an Int32Array");
    job->cancel = reinterpret_cast<std::atomic<int32_t>*>(r3map::TypedArrayBytes(cancel));
    keep->push_back(Napi::Persistent(options.Get("cancel")));
  }
  if (options.Get("fd").IsNumber()) {
    const int fd = options.Get("fd").As<Napi::Number>().Int32Value();
    // Our own descriptor: the caller may close theirs while we read.
    job->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (job->fd < 0) {
      r3map::SystemError(env, errno, "fcntl(F_DUPFD_CLOEXEC)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    job->direct = options.Get("direct").ToBoolean();
    bool aligned = job->chunkSize % kDirectAlign == 0;
    for (const Span& span : job->spans) aligned = aligned && span.offset % kDirectAlign == 0;
    if (job->direct && !aligned)
      return Invalid(env, "digestChunks: with direct, span offsets and chunkSize must be multiples of 4096");
  } else if (options.Get("segments").IsArray()) {
    Napi::Array segments = options.Get("segments").As<Napi::Array>();
    uint64_t total = 0;
    for (uint32_t i = 0; i < segments.Length(); i++) {
      Napi::Value segment = segments.Get(i);
      if (!segment.IsTypedArray()) return Invalid(env, "digestChunks: segments must be Uint8Arrays");
      auto array = segment.As<Napi::TypedArray>();
      job->segmentStarts.push_back(total);
      job->segments.push_back({r3map::TypedArrayBytes(array), array.ByteLength()});
      keep->push_back(Napi::Persistent(segment));
      total += array.ByteLength();
    }
    if (spanEnd > total) return Invalid(env, "digestChunks: a span reaches past the memory");
  } else {
    return Invalid(env, "digestChunks: give an fd or memory segments");
  }
  for (auto& reference : *keep) reference.SuppressDestruct();
  const uint64_t workers = std::max<uint64_t>(1, std::min<uint64_t>(threads, job->units));
  return r3map::RunOnThread(env, "r3map-digest", [job, keep, workers]() {
    // This thread is one of the workers; the others are its own std::threads.
    std::vector<std::thread> helpers;
    for (uint64_t i = 1; i < workers; i++) helpers.emplace_back([job]() { Work(*job); });
    Work(*job);
    for (auto& helper : helpers) helper.join();
    auto release = [keep](Napi::Env env) {
      for (auto& reference : *keep) reference.Reset();
      return env.Undefined();
    };
    if (job->error.load() != 0) {
      // The references go with the rejection's settle too.
      int err = job->error.load();
      std::string call = job->failedCall;
      return r3map::ThreadResult{err, call, release};
    }
    if (job->Cancelled()) return r3map::ThreadResult{ECANCELED, "digest", release};
    return r3map::ThreadResult{0, "", release};
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("digestChunks", Napi::Function::New(env, DigestChunks));
}

}  // namespace

R3MAP_MODULE(digest, Init);
