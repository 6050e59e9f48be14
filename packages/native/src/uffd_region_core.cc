// The handler thread of a userfaultfd region and the ioctls that resolve a
// fault a whole chunk at a time. Present chunks are served here without any
// JavaScript; misses go out through a callback and come back via Complete().
#include <endian.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>

#include "shared_bitmap.h"
#include "thread_priority.h"
#include "uffd_region.h"

namespace r3map {

namespace {

// A page of zeros, the source for pages a cache never wrote.
const uint8_t* ZeroPage(uint64_t page_size) {
  static const uint8_t* zeros = static_cast<const uint8_t*>(calloc(1, page_size));
  return zeros;
}

// A per-thread buffer for reading a chunk from a file cache before UFFDIO_COPY.
uint8_t* Bounce(uint64_t size) {
  thread_local std::unique_ptr<uint8_t, decltype(&free)> buffer(nullptr, &free);
  thread_local uint64_t capacity = 0;
  if (capacity < size) {
    buffer.reset(static_cast<uint8_t*>(aligned_alloc(4096, (size + 4095) / 4096 * 4096)));
    capacity = buffer ? size : 0;
  }
  return buffer.get();
}

}  // namespace

RegionCore::RegionCore(int uffd, RegionConfig config)
    : config_(std::move(config)),
      uffd_(uffd),
      chunks_((config_.size + config_.chunk_size - 1) / config_.chunk_size),
      page_size_(static_cast<uint64_t>(sysconf(_SC_PAGESIZE))),
      state_(new std::atomic<uint8_t>[chunks_]) {
  for (uint64_t i = 0; i < chunks_; i++) state_[i].store(kUnmapped, std::memory_order_relaxed);
}

RegionCore::~RegionCore() { Shutdown(); }

bool RegionCore::Start(MissFn on_miss, void* context, int* err) {
  on_miss_ = on_miss;
  miss_context_ = context;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    *err = errno;
    return false;
  }
  thread_ = std::thread([this] { Run(); });
  if (config_.chunk_size >= kParallelCopyMin && !config_.continue_mode && std::thread::hardware_concurrency() > 1) {
    helper_ = std::thread([this] { RunHelper(); });
  }
  return true;
}

void RegionCore::Complete(uint32_t chunk, bool ok) {
  if (chunk >= chunks_ || wake_fd_ < 0) return;
  if (config_.chunk_size <= kInlineCompletionLimit) {
    // Small chunks: map it right here on the calling (JavaScript) thread. The
    // ioctl is short, and it saves waking the handler thread, which is most
    // of a small miss's latency.
    Finish(chunk, ok);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(completions_mutex_);
    completions_.emplace_back(chunk, ok);
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

int RegionCore::Fill(uint32_t chunk, const uint8_t* bytes, size_t length, bool* placed) {
  *placed = false;
  if (chunk >= chunks_) return ERANGE;
  uint8_t state = state_[chunk].load(std::memory_order_acquire);
  if (state == kMapped || state == kPoisoned) return 0;
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  int err;
  if (bytes == nullptr) {
    if (!HasCache()) return ENODATA;
    err = ResolveFromCache(chunk);
  } else if (length < span) {
    return EINVAL;
  } else if (config_.continue_mode) {
    uint64_t done = 0;
    while (done < span) {
      ssize_t n = pwrite(config_.memfd, bytes + done, span - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return n < 0 ? errno : EIO;
      done += static_cast<uint64_t>(n);
    }
    err = ContinueRange(offset, span);
  } else {
    err = CopyRange(offset, bytes, span);
  }
  if (err != 0) return err;
  if (state_[chunk].exchange(kMapped, std::memory_order_acq_rel) != kMapped) {
    *placed = true;
    stats_.filled.fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

int RegionCore::MapPresent(uint32_t first, uint32_t count, uint32_t* mapped) {
  *mapped = 0;
  if (!HasCache()) return ENODATA;
  if (first >= chunks_) return ERANGE;
  const uint64_t end = std::min<uint64_t>(chunks_, static_cast<uint64_t>(first) + count);
  uint64_t chunk = first;
  while (chunk < end) {
    // A batch: consecutive chunks that are present and unmapped. Pending ones
    // are left to the miss that is fetching them, poisoned ones alone.
    uint64_t stop = chunk;
    while (stop < end && Present(stop) && state_[stop].load(std::memory_order_acquire) == kUnmapped) stop++;
    if (stop == chunk) {
      chunk++;
      continue;
    }
    uint64_t offset, span, last_offset, last_span;
    ChunkSpan(chunk, &offset, &span);
    ChunkSpan(stop - 1, &last_offset, &last_span);
    int err = ResolveSpan(offset, last_offset + last_span - offset);
    if (err != 0) return err;
    for (uint64_t at = chunk; at < stop; at++) {
      // A fault may have mapped it meanwhile (the kernel then reported EEXIST and woke it).
      if (state_[at].exchange(kMapped, std::memory_order_acq_rel) != kMapped) (*mapped)++;
    }
    chunk = stop;
  }
  stats_.filled.fetch_add(*mapped, std::memory_order_relaxed);
  return 0;
}

int RegionCore::Evict(uint32_t chunk, uint8_t* local) {
  if (chunk >= chunks_) return ERANGE;
  if (local == nullptr) return ENOTSUP;
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  state_[chunk].store(kUnmapped, std::memory_order_release);
  if (config_.memfd >= 0) {
    // Shared memory: dropping the page tables is not enough (the page cache
    // would map the old bytes again without a fault); punching the hole drops
    // both, in every process that maps the memfd.
    if (fallocate(config_.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(span)) != 0)
      return errno;
    return 0;
  }
  return madvise(local + offset, span, MADV_DONTNEED) == 0 ? 0 : errno;
}

void RegionCore::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    stopping_.store(true, std::memory_order_release);
    // Then the remote: its fetches still waiting are dropped (MissAfterAll),
    // and unregistering below wakes their threads, as for misses JavaScript
    // had not answered.
    serving_remote_.store(nullptr, std::memory_order_release);
    if (remote_) remote_->Stop();
    if (wake_fd_ >= 0) {
      uint64_t one = 1;
      (void)!write(wake_fd_, &one, sizeof(one));
    }
    if (thread_.joinable()) thread_.join();
    if (helper_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(helper_mutex_);
        helper_stop_ = true;
      }
      helper_cv_.notify_all();
      helper_.join();
    }
    if (uffd_ >= 0) {
      // Unregistering wakes every thread blocked on a fault here; it retries
      // and gets ordinary memory. (Closing alone would not wake threads of a
      // process that still holds its own copy of the descriptor.)
      struct uffdio_range range = {config_.base, config_.size};
      ioctl(uffd_, UFFDIO_UNREGISTER, &range);
      close(uffd_);
      uffd_ = -1;
    }
    if (wake_fd_ >= 0) close(wake_fd_);
    wake_fd_ = -1;
    if (config_.cache_fd >= 0) close(config_.cache_fd);  // our duplicate
    config_.cache_fd = -1;
  });
}

void RegionCore::Run() {
  r3map::SetThisThreadNice(r3map::kResponsiveNice);
  constexpr int kBatch = 64;
  struct uffd_msg messages[kBatch];
  struct pollfd fds[2] = {{uffd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (!stopping_.load(std::memory_order_acquire)) {
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof(count));
      if (stopping_.load(std::memory_order_acquire)) break;
      DrainCompletions();
    }
    if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      // The target address space is gone (an adopted process exited): only
      // completions remain meaningful, so stop polling the descriptor.
      fds[0].fd = -1;
    }
    if (fds[0].revents & POLLIN) {
      ssize_t got = read(uffd_, messages, sizeof(messages));
      if (got < 0) continue;  // EAGAIN: another reader or a spurious wake-up
      for (ssize_t i = 0; i < got / static_cast<ssize_t>(sizeof(uffd_msg)); i++) {
        if (messages[i].event == UFFD_EVENT_PAGEFAULT) HandleFault(messages[i].arg.pagefault.address, messages[i].arg.pagefault.feat.ptid);
      }
    }
  }
}

void RegionCore::HandleFault(uint64_t address, uint32_t thread_id) {
  stats_.faults.fetch_add(1, std::memory_order_relaxed);
  if (address < config_.base || address >= config_.base + config_.size) return;
  uint64_t chunk = (address - config_.base) / config_.chunk_size;
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  switch (state_[chunk].load(std::memory_order_acquire)) {
    case kPending:
      return;  // JavaScript is already fetching it; its completion wakes everyone.
    case kPoisoned: {
      // The poison did not take on this page (the thread faulted again), so
      // poison just this page; failing that, signal the thread directly, so
      // that it never loops on the fault.
      uint64_t page = (address - config_.base) / page_size_ * page_size_;
      if (PoisonRange(page, page_size_) != 0 && thread_id != 0) syscall(SYS_tkill, thread_id, SIGBUS);
      return;
    }
    case kMapped:
      if (HasCache()) {
        // Usually the fault raced with the ioctl that mapped the chunk (the
        // copy below then finds the page and only wakes the thread). But the
        // page may really be gone (madvise(MADV_DONTNEED), shmem reclaim under
        // MINOR mode): then this maps it again instead of looping forever.
        uint64_t page = (address - config_.base) / page_size_ * page_size_;
        if (ResolveSpan(page, page_size_) != 0) WakeRange(offset, span);
        return;
      }
      // No cache to map it from again: ask JavaScript, as for a new miss.
      state_[chunk].store(kUnmapped, std::memory_order_release);
      break;
    default:
      break;
  }
  // Gated (a migration's leecher before its data is final): every fault goes to JavaScript, which holds it.
  const bool gated = gated_.load(std::memory_order_acquire) && on_miss_ != nullptr;
  if ((Present(chunk) && !gated) || on_miss_ == nullptr) {
    // Counted before the ioctl wakes the faulting thread, so a reader that
    // finished touching sees its own faults in the stats.
    stats_.resolved_natively.fetch_add(1, std::memory_order_relaxed);
    int err = HasCache() ? ResolveChunkInParallel(chunk) : 0;
    if (err == 0) {
      state_[chunk].store(kMapped, std::memory_order_release);
    } else {
      stats_.resolved_natively.fetch_sub(1, std::memory_order_relaxed);
      stats_.failed.fetch_add(1, std::memory_order_relaxed);
      PoisonRange(offset, span);
      state_[chunk].store(kPoisoned, std::memory_order_release);
    }
    return;
  }
  state_[chunk].store(kPending, std::memory_order_release);
  if (!gated && FetchNatively(chunk)) return;
  stats_.misses.fetch_add(1, std::memory_order_relaxed);
  on_miss_(miss_context_, static_cast<uint32_t>(chunk));
}

bool RegionCore::FetchNatively(uint64_t chunk) {
  NbdRemoteReader* remote = serving_remote_.load(std::memory_order_acquire);
  if (remote == nullptr || !ClaimInFlight(chunk)) return false;
  // The engine may have stored it and given up its claim just before ours:
  // present chunks are never fetched again (the user may be writing them).
  if (Present(chunk)) {
    ReleaseInFlight(chunk);
    Complete(static_cast<uint32_t>(chunk), true);
    return true;
  }
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  if (!remote->Submit(0, chunk, offset, static_cast<uint32_t>(span))) {
    ReleaseInFlight(chunk);
    return false;
  }
  stats_.remote_fetches.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// On the remote reader's thread: the chunk's bytes arrived. Stored, then
// present, then unclaimed (in that order: whoever sees the claim gone sees the
// chunk present), then mapped; JavaScript hears of it last.
void RegionCore::Landed(uint32_t chunk, const uint8_t* data, uint32_t length) {
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  uint64_t done = 0;
  while (done < length) {
    ssize_t n = pwrite(config_.memfd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return MissAfterAll(chunk);
    done += static_cast<uint64_t>(n);
  }
  SetPresent(chunk);
  ReleaseInFlight(chunk);
  Complete(chunk, true);
  if (landed_ != nullptr) landed_(landed_context_, chunk);
}

// The native fetch failed: the chunk goes to JavaScript as an ordinary miss.
void RegionCore::MissAfterAll(uint32_t chunk) {
  ReleaseInFlight(chunk);
  // Closing: JavaScript may be gone (a worker's teardown), and a miss it
  // cannot take would poison the chunk under a thread that merely touched it.
  if (stopping_.load(std::memory_order_acquire)) return;
  stats_.misses.fetch_add(1, std::memory_order_relaxed);
  on_miss_(miss_context_, chunk);
}

int RegionCore::ServeMissesFrom(int fd, uint32_t timeout_ms, uint32_t min_block, uint32_t max_block,
                                LandedFn landed, void* context) {
  if (!config_.continue_mode || config_.presence == nullptr || config_.in_flight == nullptr ||
      on_miss_ == nullptr || remote_) {
    return EINVAL;
  }
  landed_ = landed;
  landed_context_ = context;
  remote_ = std::make_unique<NbdRemoteReader>(
      fd, timeout_ms, min_block, max_block,
      [this](uint32_t, uint64_t chunk, const uint8_t* data, uint32_t length) {
        Landed(static_cast<uint32_t>(chunk), data, length);
      },
      [this](uint32_t, uint64_t chunk, uint64_t, uint32_t) { MissAfterAll(static_cast<uint32_t>(chunk)); });
  serving_remote_.store(remote_.get(), std::memory_order_release);
  return 0;
}

void RegionCore::DrainCompletions() {
  std::vector<std::pair<uint32_t, bool>> batch;
  {
    std::lock_guard<std::mutex> lock(completions_mutex_);
    batch.swap(completions_);
  }
  for (auto [chunk, ok] : batch) Finish(chunk, ok);
}

void RegionCore::Finish(uint32_t chunk, bool ok) {
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  uint8_t state = state_[chunk].load(std::memory_order_acquire);
  if (state == kMapped || state == kPoisoned) {
    WakeRange(offset, span);  // fill() got there first
    return;
  }
  // Without a cache, onMiss must have mapped the chunk with fillFrom(), which
  // marks it mapped; a success that left it unmapped is an error.
  int err = ok ? (HasCache() ? ResolveChunkInParallel(chunk) : ENODATA) : EIO;
  if (err == 0) {
    state_[chunk].store(kMapped, std::memory_order_release);
  } else {
    stats_.failed.fetch_add(1, std::memory_order_relaxed);
    PoisonRange(offset, span);  // the faulting thread gets SIGBUS instead of hanging
    state_[chunk].store(kPoisoned, std::memory_order_release);
  }
}

bool RegionCore::Present(uint64_t chunk) const {
  return bits::Test(config_.presence, config_.presence_words, chunk);
}

void RegionCore::SetPresent(uint64_t chunk) { bits::Set(config_.presence, config_.presence_words, chunk); }

bool RegionCore::ClaimInFlight(uint64_t chunk) {
  return bits::TestAndSet(config_.in_flight, config_.in_flight_words, chunk);
}

void RegionCore::ReleaseInFlight(uint64_t chunk) { bits::Clear(config_.in_flight, config_.in_flight_words, chunk); }

bool RegionCore::HasCache() const {
  return config_.continue_mode || !config_.segments.empty() || config_.cache_fd >= 0;
}

void RegionCore::ChunkSpan(uint64_t chunk, uint64_t* offset, uint64_t* length) const {
  *offset = chunk * config_.chunk_size;
  *length = std::min(config_.chunk_size, config_.size - *offset);
}

int RegionCore::ResolveFromCache(uint64_t chunk) {
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  return ResolveSpan(offset, span);
}

int RegionCore::ResolveChunkInParallel(uint64_t chunk) {
  uint64_t offset, span;
  ChunkSpan(chunk, &offset, &span);
  if (!helper_.joinable() || span < kParallelCopyMin) return ResolveSpan(offset, span);
  const uint64_t half = span / 2 / page_size_ * page_size_;
  {
    std::lock_guard<std::mutex> lock(helper_mutex_);
    helper_offset_ = offset + half;
    helper_length_ = span - half;
    helper_job_ = Job::kPosted;
  }
  helper_cv_.notify_one();
  int err = ResolveSpan(offset, half);
  std::unique_lock<std::mutex> lock(helper_mutex_);
  helper_cv_.wait(lock, [this] { return helper_job_ == Job::kDone; });
  helper_job_ = Job::kIdle;
  return err != 0 ? err : helper_result_;
}

void RegionCore::RunHelper() {
  std::unique_lock<std::mutex> lock(helper_mutex_);
  while (true) {
    helper_cv_.wait(lock, [this] { return helper_stop_ || helper_job_ == Job::kPosted; });
    if (helper_stop_) return;
    uint64_t offset = helper_offset_, length = helper_length_;
    lock.unlock();
    int result = ResolveSpan(offset, length);
    lock.lock();
    helper_result_ = result;
    helper_job_ = Job::kDone;
    helper_cv_.notify_all();
  }
}

int RegionCore::ResolveSpan(uint64_t offset, uint64_t span) {
  if (config_.continue_mode) return ContinueRange(offset, span);
  if (!config_.segments.empty()) {
    // The chunk may straddle segments: copy each piece from its own segment.
    uint64_t segment_start = 0, at = offset, end = offset + span;
    for (const CacheSegment& segment : config_.segments) {
      uint64_t segment_end = segment_start + segment.length;
      if (at < segment_end && at < end) {
        uint64_t piece = std::min(end, segment_end) - at;
        int err = CopyRange(at, segment.data + (at - segment_start), piece);
        if (err != 0) return err;
        at += piece;
      }
      segment_start = segment_end;
    }
    return at == end ? 0 : ERANGE;
  }
  uint8_t* buffer = Bounce(span);
  if (buffer == nullptr) return ENOMEM;
  uint64_t done = 0;
  while (done < span) {
    ssize_t n = pread(config_.cache_fd, buffer + done, span - done,
                      static_cast<off_t>(config_.cache_offset + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;  // past the end of the file: never written, so zeros
    done += static_cast<uint64_t>(n);
  }
  if (done < span) memset(buffer + done, 0, span - done);
  return CopyRange(offset, buffer, span);
}

int RegionCore::CopyRange(uint64_t offset, const uint8_t* source, uint64_t length) {
  uint64_t done = 0;
  bool wake = false;
  const uint64_t mode = config_.write_protect ? UFFDIO_COPY_MODE_WP : 0;
  while (done < length) {
    struct uffdio_copy copy = {config_.base + offset + done, reinterpret_cast<uint64_t>(source + done), length - done,
                               mode, 0};
    if (ioctl(uffd_, UFFDIO_COPY, &copy) == 0) break;
    if (copy.copy > 0) {
      done += static_cast<uint64_t>(copy.copy);
      continue;
    }
    int err = errno;
    if (err == EAGAIN) continue;
    if (err != EEXIST) return err;
    // A page of this chunk is already mapped (a racing fill): skip it.
    done += page_size_;
    wake = true;
  }
  if (wake) WakeRange(offset, length);
  return 0;
}

int RegionCore::ContinueRange(uint64_t offset, uint64_t length) {
  uint64_t done = 0;
  bool wake = false;
  const uint64_t mode = config_.write_protect ? UFFDIO_CONTINUE_MODE_WP : 0;
  while (done < length) {
    struct uffdio_continue request = {{config_.base + offset + done, length - done}, mode, 0};
    if (ioctl(uffd_, UFFDIO_CONTINUE, &request) == 0) break;
    if (request.mapped > 0) {
      done += static_cast<uint64_t>(request.mapped);
      continue;
    }
    int err = errno;
    if (err == EAGAIN) continue;
    if (err == EEXIST) {
      wake = true;
    } else if (err == EFAULT) {
      // A hole in the memfd: the cache never wrote this page, so it reads as zeros.
      int copy_err = CopyRange(offset + done, ZeroPage(page_size_), page_size_);
      if (copy_err != 0 && copy_err != EEXIST) return copy_err;
    } else {
      return err;
    }
    done += page_size_;
  }
  if (wake) WakeRange(offset, length);
  return 0;
}

int RegionCore::PoisonRange(uint64_t offset, uint64_t length) {
  if (config_.write_protect) {
    // UFFDIO_POISON refuses to replace any PTE, even the write-protect markers
    // that dirty tracking leaves on untouched pages: clear them first.
    struct uffdio_writeprotect wp = {{config_.base + offset, length}, UFFDIO_WRITEPROTECT_MODE_DONTWAKE};
    ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp);
  }
  uint64_t done = 0;
  int result = 0;
  while (done < length) {
    UffdioPoison poison = {{config_.base + offset + done, length - done}, 0, 0};
    if (ioctl(uffd_, kUffdioPoison, &poison) == 0) break;
    if (poison.updated > 0) {
      done += static_cast<uint64_t>(poison.updated);
      continue;
    }
    int err = errno;
    if (err == EAGAIN) continue;
    if (err != EEXIST) {
      result = err;
      break;
    }
    result = EEXIST;  // a page that is mapped already keeps its data
    done += page_size_;
  }
  WakeRange(offset, length);
  return result;
}

void RegionCore::WakeRange(uint64_t offset, uint64_t length) {
  struct uffdio_range range = {config_.base + offset, length};
  ioctl(uffd_, UFFDIO_WAKE, &range);
}

}  // namespace r3map
