// Shared by the userfaultfd, pagemap and mmap facilities: system errors as JS
// errors carrying an errno name, and memory mappings exposed as external
// ArrayBuffers that close() can detach before the memory is unmapped.
#pragma once
#include <napi.h>
#include <string.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace r3map {

inline std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "E" + std::to_string(err);
}

// Throws `Error(message + ": " + strerror)` with `.errno` = "EINVAL" etc. and
// `.syscall`; the TypeScript layer turns it into an R3mapError.
inline void ThrowErrno(Napi::Env env, int err, const std::string& what) {
  Napi::Error error = Napi::Error::New(env, what + ": " + strerror(err));
  error.Set("errno", Napi::String::New(env, ErrnoName(err)));
  error.Set("syscall", Napi::String::New(env, what));
  error.ThrowAsJavaScriptException();
}

// Throws an Error whose `.code` is an r3map error code (ERR_PERMISSION, …).
inline void ThrowCode(Napi::Env env, const char* code, const std::string& message, int err = 0) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  if (err != 0) error.Set("errno", Napi::String::New(env, ErrnoName(err)));
  error.ThrowAsJavaScriptException();
}

// A mapping that JavaScript sees through external ArrayBuffers. Views created
// on the owning thread are detached by Close(); views created on other threads
// (workers) cannot be detached from here, so they keep the memory mapped until
// they are garbage-collected. The memory is unmapped exactly once, when it is
// closed and no foreign view remains.
class Mapping {
 public:
  Mapping(void* address, size_t length) : address_(static_cast<uint8_t*>(address)), length_(length) {}
  ~Mapping() { Unmap(); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* address() const { return address_; }
  size_t length() const { return length_; }
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  // An ArrayBuffer over the whole mapping for `env`. `owner` views are kept
  // (weakly) so Close() can detach them.
  static Napi::Value View(Napi::Env env, const std::shared_ptr<Mapping>& self, bool owner) {
    return View(env, self, owner, 0, self->length_);
  }

  // A view of [offset, offset + length): typed arrays stop at 4 GiB in Node
  // 20, so larger mappings are viewed in parts.
  static Napi::Value View(Napi::Env env, const std::shared_ptr<Mapping>& self, bool owner, uint64_t offset,
                          uint64_t length) {
    if (self->closed()) {
      ThrowCode(env, "ERR_CLOSED", "the region is closed; create a new one");
      return env.Undefined();
    }
    if (offset > self->length_ || length > self->length_ - offset) {
      ThrowCode(env, "ERR_OUT_OF_RANGE", "the view reaches past the end of the mapping");
      return env.Undefined();
    }
    auto* hold = new std::shared_ptr<Mapping>(self);
    if (!owner) self->foreign_.fetch_add(1, std::memory_order_acq_rel);
    napi_value value;
    napi_status status = napi_create_external_arraybuffer(
        env, self->address_ + offset, length,
        owner ? &FinalizeOwned : &FinalizeForeign, hold, &value);
    if (status != napi_ok) {
      if (!owner) self->foreign_.fetch_sub(1, std::memory_order_acq_rel);
      delete hold;
      ThrowCode(env, "ERR_OUT_OF_RANGE",
                "cannot create an ArrayBuffer this large (or external ArrayBuffers are disabled): view it in parts of "
                "at most 4 GiB");
      return env.Undefined();
    }
    if (owner) {
      std::lock_guard<std::mutex> lock(self->mutex_);
      self->owned_.push_back(Napi::Reference<Napi::ArrayBuffer>::New(Napi::ArrayBuffer(env, value), 0));
    }
    return Napi::Value(env, value);
  }

  // Detaches the owner's views (later access throws TypeError instead of
  // faulting), then unmaps unless foreign views remain. Idempotent.
  void Close(Napi::Env env) {
    if (closed_.exchange(true, std::memory_order_acq_rel)) return;
    std::vector<Napi::Reference<Napi::ArrayBuffer>> owned;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      owned.swap(owned_);
    }
    for (auto& ref : owned) {
      Napi::ArrayBuffer buffer = ref.Value();
      if (!buffer.IsEmpty() && !buffer.IsDetached()) buffer.Detach();
    }
    if (foreign_.load(std::memory_order_acquire) == 0) Unmap();
  }

 private:
  static void FinalizeOwned(napi_env, void*, void* hint) { delete static_cast<std::shared_ptr<Mapping>*>(hint); }

  static void FinalizeForeign(napi_env, void*, void* hint) {
    auto* hold = static_cast<std::shared_ptr<Mapping>*>(hint);
    Mapping& self = **hold;
    if (self.foreign_.fetch_sub(1, std::memory_order_acq_rel) == 1 && self.closed()) self.Unmap();
    delete hold;
  }

  void Unmap() {
    if (unmapped_.exchange(true)) return;
    if (address_ != nullptr && length_ > 0) munmap(address_, length_);
  }

  uint8_t* address_;
  size_t length_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> unmapped_{false};
  std::atomic<int> foreign_{0};
  std::mutex mutex_;
  std::vector<Napi::Reference<Napi::ArrayBuffer>> owned_;
};

// Reads an optional non-negative integer property.
inline bool GetSize(Napi::Object options, const char* key, uint64_t* out) {
  Napi::Value value = options.Get(key);
  if (!value.IsNumber()) return false;
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0) || number > 9007199254740991.0 || number != static_cast<double>(static_cast<uint64_t>(number)))
    return false;
  *out = static_cast<uint64_t>(number);
  return true;
}

}  // namespace r3map
