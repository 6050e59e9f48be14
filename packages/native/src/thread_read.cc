// readOnThread(path, offset, length): an O_DIRECT pread of a file on a native
// thread of its own, resolving with the bytes read.
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

void Init(Napi::Env env, Napi::Object exports) { exports.Set("readOnThread", Napi::Function::New(env, ReadOnThread)); }

}  // namespace

R3MAP_MODULE(thread_read, Init);
