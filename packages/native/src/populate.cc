// populateMemory(view, cancel, hugePages): faults a range of memory in ahead of use, on a
// native thread of its own.
//
// A managed mount's memory cache is written once per chunk as the chunk is
// pulled, and on a virtual machine the first touch of each 4 KiB page costs
// microseconds — with data arriving at gigabytes per second, the page faults
// become the pull's bottleneck on the thread that receives the data.
// MADV_POPULATE_WRITE maps the pages in bulk (about twice as cheap as taking
// the faults one by one) and here on another core, ahead of the data. It never
// changes a byte: pages that are already there stay as they are, so it can
// run while the cache is being filled. With hugePages the range is first
// advised for transparent huge pages: 512 times fewer faults, and the cost of
// assembling each 2 MiB page (zeroing, sometimes compaction: milliseconds)
// is paid here rather than by a reader's miss.
#include <napi.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "fuse_thread_promise.h"
#include "module.h"
#include "typed_array.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace {

// Small steps, so a cancel (the mount closing) takes effect quickly, the
// puller finds the front of the cache ready early, and the memory-map lock
// each step holds for reading is not held long. While it is held, a writer
// (V8's garbage collector changing protections) queues behind it, and every
// page fault queues behind that writer — a reader's too: 2 MiB steps over 4
// KiB pages (a memfd, where shmem has no huge pages) held it about 1 ms and
// stalled a slice's first touch by 2-3 ms (traced). Where huge pages apply,
// the first step into one faults in all of it and the rest find it there.
constexpr uint64_t kStep = 256u << 10;

Napi::Value PopulateMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray()) {
    Napi::TypeError::New(env, "populateMemory(view: Uint8Array, cancel: Int32Array, hugePages?: boolean)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto view = info[0].As<Napi::TypedArray>();
  auto cancel = info[1].As<Napi::TypedArray>();
  if (cancel.TypedArrayType() != napi_int32_array || cancel.ElementLength() < 1) {
    Napi::TypeError::New(env, "cancel must be an Int32Array over shared memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint8_t* base = r3map::TypedArrayBytes(view);
  const uint64_t length = view.ByteLength();
  auto* stop = reinterpret_cast<std::atomic<int32_t>*>(r3map::TypedArrayBytes(cancel));
  if (base == nullptr || stop == nullptr) {
    Napi::TypeError::New(env, "populateMemory: cannot reach the arrays' memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Both buffers stay alive until the thread is done: the references are
  // dropped on the JS thread when the promise settles.
  auto keep = std::make_shared<std::pair<Napi::Reference<Napi::Value>, Napi::Reference<Napi::Value>>>(
      Napi::Persistent(info[0]), Napi::Persistent(info[1]));
  // Released explicitly on the JS thread; never from a destructor on this
  // thread (after a worker's environment is gone they are simply dropped).
  keep->first.SuppressDestruct();
  keep->second.SuppressDestruct();
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = (reinterpret_cast<uint64_t>(base) + page - 1) / page * page;
  const uint64_t end = (reinterpret_cast<uint64_t>(base) + length) / page * page;
  if (info.Length() > 2 && info[2].ToBoolean()) {
    constexpr uint64_t kHuge = 2u << 20;
    const uint64_t hugeStart = (start + kHuge - 1) / kHuge * kHuge;
    const uint64_t hugeEnd = end / kHuge * kHuge;
    if (hugeEnd > hugeStart) madvise(reinterpret_cast<void*>(hugeStart), hugeEnd - hugeStart, MADV_HUGEPAGE);
  }
  return r3map::RunOnThread(env, "r3map-populate", [start, end, stop, keep]() {
    // Default priority on purpose: a step holds the memory-map lock, and a
    // lowered thread would be preempted holding it while everyone waits.
    uint64_t done = 0;
    for (uint64_t at = start; at < end && stop->load(std::memory_order_relaxed) == 0; at += kStep) {
      const uint64_t n = std::min(kStep, end - at);
      // Unsupported (before 5.14) or out of memory: stop quietly, the pages
      // are then faulted in as they are written, as without this.
      if (madvise(reinterpret_cast<void*>(at), n, MADV_POPULATE_WRITE) != 0) break;
      done += n;
    }
    return r3map::ThreadResult{0, "", [keep, done](Napi::Env env) mutable {
                                 keep->first.Reset();
                                 keep->second.Reset();
                                 return Napi::Number::New(env, static_cast<double>(done));
                               }};
  });
}

// keepFromChildren(view): madvise(MADV_DONTFORK) on the whole pages of a
// view. A fork() (every child_process spawn) otherwise marks all private
// memory copy-on-write in the parent too, and the next write to each 4 KiB
// page of a cache takes a fault: a 256 MiB cache written after one spawn cost
// 65,536 faults. A child that execs at once never needs this memory.
Napi::Value KeepFromChildren(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "keepFromChildren(view: Uint8Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto view = info[0].As<Napi::TypedArray>();
  uint8_t* base = r3map::TypedArrayBytes(view);
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = (reinterpret_cast<uint64_t>(base) + page - 1) / page * page;
  const uint64_t end = (reinterpret_cast<uint64_t>(base) + view.ByteLength()) / page * page;
  bool ok = end <= start || madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTFORK) == 0;
  return Napi::Boolean::New(env, ok);
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("populateMemory", Napi::Function::New(env, PopulateMemory));
  exports.Set("keepFromChildren", Napi::Function::New(env, KeepFromChildren));
}

}  // namespace

R3MAP_MODULE(populate, Init);
