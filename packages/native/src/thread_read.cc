// readOnThread(path, offset, length): an O_DIRECT pread of a file on a native
// thread of its own, resolving with the bytes read.
// touchOnThread(memory, offset): one byte of memory read by the kernel on a
// native thread of its own (a slice's page fault, answered by this thread).
//
// For reads the calling thread must not make itself: a read of a FUSE file
// whose misses are answered by this very thread's event loop (a mount warming
// its miss path at open, a test reading a same-thread mount). Never the libuv
// threadpool, which threads blocked on a mount can exhaust.
#include <fcntl.h>
#include <napi.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "fuse_thread_promise.h"
#include "module.h"
#include "typed_array.h"

namespace {

constexpr size_t kAlign = 4096;

Napi::Value ReadOnThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "readOnThread(path: string, offset: number, length: number)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  const int64_t offset = info[1].As<Napi::Number>().Int64Value();
  const int64_t length = info[2].As<Napi::Number>().Int64Value();
  if (offset < 0 || length <= 0 || offset % kAlign != 0 || length % kAlign != 0 || length > (64 << 20)) {
    Napi::RangeError::New(env, "readOnThread: offset and length must be multiples of 4096 (length ≤ 64 MiB)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return r3map::RunOnThread(env, "r3map-read", [path, offset, length]() {
    int fd = open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) return r3map::ThreadResult::Fail(errno, "open");
    void* buffer = nullptr;
    if (posix_memalign(&buffer, kAlign, static_cast<size_t>(length)) != 0) {
      close(fd);
      return r3map::ThreadResult::Fail(ENOMEM, "posix_memalign");
    }
    ssize_t got = pread(fd, buffer, static_cast<size_t>(length), offset);
    int err = got < 0 ? errno : 0;
    free(buffer);
    close(fd);
    if (err != 0) return r3map::ThreadResult::Fail(err, "pread");
    return r3map::ThreadResult{0, {}, [got](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(got)); }};
  });
}

// The byte is copied into a pipe by write(2) rather than loaded by this
// thread: a fault that ends in failure (a poisoned userfaultfd page) is then
// EFAULT for the call, not SIGBUS for the process.
Napi::Value TouchOnThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "touchOnThread(memory: Uint8Array, offset: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::TypedArray memory = info[0].As<Napi::TypedArray>();
  const int64_t offset = info[1].As<Napi::Number>().Int64Value();
  if (offset < 0 || static_cast<uint64_t>(offset) >= memory.ByteLength()) {
    Napi::RangeError::New(env, "touchOnThread: offset outside the memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // The caller keeps the memory mapped until the promise settles.
  const uint8_t* byte = r3map::TypedArrayBytes(memory) + offset;
  return r3map::RunOnThread(env, "r3map-touch", [byte]() {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return r3map::ThreadResult::Fail(errno, "pipe2");
    ssize_t wrote = write(pipe_fds[1], byte, 1);
    int err = wrote < 0 ? errno : 0;
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    if (err != 0) return r3map::ThreadResult::Fail(err, "write");
    return r3map::ThreadResult{0, {}, [](Napi::Env env) { return env.Undefined(); }};
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("readOnThread", Napi::Function::New(env, ReadOnThread));
  exports.Set("touchOnThread", Napi::Function::New(env, TouchOnThread));
}

}  // namespace

R3MAP_MODULE(thread_read, Init);
