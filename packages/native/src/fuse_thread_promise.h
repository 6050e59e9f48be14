// Helpers shared by the FUSE, loop, kernel-NBD and tape bindings:
// - SystemError: a JS Error shaped like Node's system errors (code = errno
//   name, errno = negative number, syscall), so the TypeScript side can map it
//   to an R3mapError with fromSystemError().
// - RunOnThread: runs a blocking system call sequence on its own native thread
//   and settles a Promise on the JS thread. Never the libuv threadpool: a call
//   that waits on a FUSE mount must not occupy a pool thread the engine needs,
//   and never the JS thread, which may be the one that has to answer.
#pragma once
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

namespace r3map {

inline Napi::Error SystemError(Napi::Env env, int err, const std::string& syscall) {
  const char* name = strerrorname_np(err);
  std::string message = syscall + ": " + std::strerror(err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, name != nullptr ? name : "EIO"));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

// The outcome of a blocking job: either err != 0 (with the failing call's
// name), or a value built on the JS thread. On failure `value` still runs
// (its result unused), so a job can release what it kept alive.
struct ThreadResult {
  int err = 0;
  std::string syscall;
  std::function<Napi::Value(Napi::Env)> value;

  static ThreadResult Fail(int err, std::string syscall) { return ThreadResult{err, std::move(syscall), {}}; }
};

namespace detail {
struct ThreadJob {
  Napi::Promise::Deferred deferred;
};

// False while a worker thread is being terminated: every call that could run
// JavaScript then fails, and node-addon-api (built without C++ exceptions)
// turns such a failure into a fatal error. A property read is such a call, and
// harmless.
inline bool CanRunJavaScript(napi_env env) {
  napi_value global, ignored;
  return napi_get_global(env, &global) == napi_ok &&
         napi_get_named_property(env, global, "undefined", &ignored) == napi_ok;
}

inline void SettleOnJsThread(Napi::Env env, Napi::Function, ThreadJob* job, ThreadResult* result) {
  // A terminating worker has nobody left to settle for.
  if (env != nullptr && CanRunJavaScript(env)) {
    Napi::HandleScope scope(env);
    if (result->err != 0) {
      // A failed job may still have references to drop on this thread (its value is not the answer).
      if (result->value) result->value(env);
      job->deferred.Reject(SystemError(env, result->err, result->syscall).Value());
    } else {
      job->deferred.Resolve(result->value ? result->value(env) : env.Undefined());
    }
  }
  delete result;
}

using SettleFn = Napi::TypedThreadSafeFunction<ThreadJob, ThreadResult, SettleOnJsThread>;
}  // namespace detail

inline Napi::Promise RunOnThread(Napi::Env env, const char* name, std::function<ThreadResult()> work) {
  auto* job = new detail::ThreadJob{Napi::Promise::Deferred::New(env)};
  Napi::Promise promise = job->deferred.Promise();
  auto settle = detail::SettleFn::New(env, name, 0, 1, job, [](Napi::Env, void*, detail::ThreadJob* j) { delete j; });
  std::thread([settle, work = std::move(work)]() mutable {
    auto* result = new ThreadResult(work());
    if (settle.BlockingCall(result) != napi_ok) delete result;
    settle.Release();
  }).detach();
  return promise;
}

}  // namespace r3map
