// The core of a userfaultfd region: the mapping, its descriptor, the local
// cache it resolves present chunks from, and the native handler thread.
// Everything here is usable from any thread; JavaScript glue is in
// uffd_region.cc.
#pragma once
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "nbd_remote_reader.h"
#include "uffd_common.h"
#include "uffd_sys.h"

namespace r3map {

struct CacheSegment {
  const uint8_t* data;
  size_t length;
};

struct RegionConfig {
  uint64_t base = 0;        // address of the region in the target process
  uint64_t size = 0;        // bytes, a multiple of the page size
  uint64_t chunk_size = 0;  // bytes, a multiple of the page size
  bool continue_mode = false;  // the memfd holds the data: resolve with UFFDIO_CONTINUE
  bool write_protect = false;  // dirty tracking: map pages write-protected (WP_ASYNC)
  int memfd = -1;              // for continue mode (pwrite target)
  uint32_t* presence = nullptr;  // little-endian u32 words, one bit per chunk (shared_bitmap.h)
  size_t presence_words = 0;
  // Chunks someone is fetching right now, one bit each, shared with the engine
  // (atomic test-and-set): a native demand fetch takes only chunks it claims.
  uint32_t* in_flight = nullptr;
  size_t in_flight_words = 0;
  std::vector<CacheSegment> segments;  // memory cache, in order
  int cache_fd = -1;                   // or a file cache …
  uint64_t cache_offset = 0;           // … starting at this offset
};

struct RegionStats {
  std::atomic<uint64_t> faults{0};            // page-fault messages read
  std::atomic<uint64_t> resolved_natively{0}; // chunks resolved without JavaScript
  std::atomic<uint64_t> misses{0};            // chunks handed to JavaScript
  std::atomic<uint64_t> failed{0};            // chunks poisoned after a failed miss
  std::atomic<uint64_t> filled{0};            // chunks placed by fill()/fillFrom()
  std::atomic<uint64_t> remote_fetches{0};    // misses fetched natively from the remote (ServeMissesFrom)
};

class RegionCore {
 public:
  enum State : uint8_t { kUnmapped = 0, kPending = 1, kMapped = 2, kPoisoned = 3 };
  using MissFn = void (*)(void* context, uint32_t chunk);  // must not block
  using LandedFn = void (*)(void* context, uint32_t chunk);  // must not block

  RegionCore(int uffd, RegionConfig config);
  ~RegionCore();

  const RegionConfig& config() const { return config_; }
  RegionStats& stats() { return stats_; }
  int uffd() const { return uffd_; }
  uint64_t chunks() const { return chunks_; }

  // Starts the handler thread. `on_miss` is called (from that thread) for a
  // chunk that is not present; the answer comes back through Complete().
  bool Start(MissFn on_miss, void* context, int* err);
  // Chunks up to this size are mapped by Complete() itself instead of the handler thread.
  static constexpr uint64_t kInlineCompletionLimit = 64 * 1024;
  // From the thread that serves misses: JavaScript finished a miss (`ok` = the
  // chunk is now in the cache).
  void Complete(uint32_t chunk, bool ok);
  // Maps a chunk from the cache (or from `bytes`) if not yet mapped; returns
  // 0, or an errno. `*placed` tells whether this call mapped it.
  int Fill(uint32_t chunk, const uint8_t* bytes, size_t length, bool* placed);
  // Maps, from the cache, the chunks in [first, first + count) that are
  // present and not mapped yet — consecutive ones with one call into the
  // kernel. `*mapped` counts them. Returns 0 or an errno.
  int MapPresent(uint32_t first, uint32_t count, uint32_t* mapped);
  // Drops a mapped chunk so that the next touch faults again (after the
  // caller cleared its presence bit: migration marks it remote). `local` is the
  // region's address in this process (nullptr for an adopted region, which
  // cannot be evicted from here). Returns 0 or an errno.
  int Evict(uint32_t chunk, uint8_t* local);
  // For a memfd cache with a presence bitmap and an in-flight bitmap: from
  // now on a miss on a chunk nobody is fetching is fetched here, over `fd` (an
  // NBD connection in the transmission phase, simple replies; taken over),
  // stored in the memfd, marked present and mapped — no JavaScript on the
  // way. `landed(chunk)` reports each such chunk afterwards. A chunk the
  // engine is fetching, and every miss once the connection failed, goes to
  // `on_miss` as before. Returns 0 or an errno (EINVAL: not such a region).
  int ServeMissesFrom(int fd, uint32_t timeout_ms, uint32_t min_block, uint32_t max_block, LandedFn landed,
                      void* context);
  // Gated, every fault goes to on_miss, present chunk or not, and nothing is
  // fetched natively: JavaScript decides when the thread may go on (a
  // migration's leecher holds faults until its data is final). Chunks
  // already mapped are not touched.
  void SetGated(bool gated) { gated_.store(gated, std::memory_order_release); }
  // Stops the thread, unregisters the range (waking any blocked thread, which
  // then sees ordinary memory) and closes the descriptor. Idempotent.
  void Shutdown();

 private:
  void Run();
  void HandleFault(uint64_t address, uint32_t thread_id);  // thread_id: 0 unless UFFD_FEATURE_THREAD_ID
  void DrainCompletions();
  void Finish(uint32_t chunk, bool ok);
  bool Present(uint64_t chunk) const;
  void SetPresent(uint64_t chunk);
  // Test-and-set of the chunk's in-flight bit: true when this call set it.
  bool ClaimInFlight(uint64_t chunk);
  void ReleaseInFlight(uint64_t chunk);
  // A native demand fetch: true when it was sent (its end calls Landed or MissAfterAll).
  bool FetchNatively(uint64_t chunk);
  void Landed(uint32_t chunk, const uint8_t* data, uint32_t length);
  void MissAfterAll(uint32_t chunk);
  bool HasCache() const;
  int ResolveFromCache(uint64_t chunk);
  // On the handler thread: large chunks are copied in two halves at once,
  // one by a helper thread (the faulting thread is blocked, so a core is free).
  int ResolveChunkInParallel(uint64_t chunk);
  void RunHelper();
  int ResolveSpan(uint64_t offset, uint64_t length);
  int CopyRange(uint64_t offset, const uint8_t* source, uint64_t length);
  int ContinueRange(uint64_t offset, uint64_t length);
  int PoisonRange(uint64_t offset, uint64_t length);
  void WakeRange(uint64_t offset, uint64_t length);
  void ChunkSpan(uint64_t chunk, uint64_t* offset, uint64_t* length) const;

  RegionConfig config_;
  int uffd_;
  int wake_fd_ = -1;
  uint64_t chunks_;
  uint64_t page_size_;
  std::unique_ptr<std::atomic<uint8_t>[]> state_;
  RegionStats stats_;
  MissFn on_miss_ = nullptr;
  void* miss_context_ = nullptr;
  std::unique_ptr<NbdRemoteReader> remote_;
  // remote_, published to the handler thread (set once, after landed_).
  std::atomic<NbdRemoteReader*> serving_remote_{nullptr};
  LandedFn landed_ = nullptr;
  void* landed_context_ = nullptr;
  std::mutex completions_mutex_;
  std::vector<std::pair<uint32_t, bool>> completions_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> gated_{false};
  std::once_flag shutdown_once_;

  static constexpr uint64_t kParallelCopyMin = 256 * 1024;
  std::thread helper_;
  std::mutex helper_mutex_;
  std::condition_variable helper_cv_;
  enum class Job { kIdle, kPosted, kDone } helper_job_ = Job::kIdle;
  bool helper_stop_ = false;
  uint64_t helper_offset_ = 0, helper_length_ = 0;
  int helper_result_ = 0;
};

}  // namespace r3map
