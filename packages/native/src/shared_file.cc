// mapSharedFile(fd, length): a SharedArrayBuffer whose memory is a MAP_SHARED
// mapping of the file. Bitmaps kept there (a managed mount's presence and
// dirty state) are in the kernel's page cache of the file the moment they are
// set — by JavaScript or by native threads — so they survive the process
// being killed. The mapping lives as long as the SharedArrayBuffer: V8 calls
// the deleter (munmap) once nothing references it any more.
//
// N-API cannot make a SharedArrayBuffer over external memory, so this uses
// V8's API directly; a v8::Local<v8::Value> is handed back as the napi_value
// it is inside Node (the same cast Node's own N-API implementation makes).
#include <sys/mman.h>
#include <v8.h>

#include <cerrno>
#include <cstring>

#include "fuse_thread_promise.h"
#include "module.h"

namespace r3map::shared_file {
namespace {

static_assert(sizeof(v8::Local<v8::Value>) == sizeof(napi_value), "napi_value is a v8::Local inside Node");

void Unmap(void* data, size_t length, void*) { munmap(data, length); }

Napi::Value JsMapSharedFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "mapSharedFile(fd, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int64_t length = info[1].As<Napi::Number>().Int64Value();
  if (length <= 0) {
    Napi::RangeError::New(env, "mapSharedFile: length must be positive").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  void* address = mmap(nullptr, static_cast<size_t>(length), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) {
    SystemError(env, errno, "mmap").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::EscapableHandleScope scope(isolate);
  std::shared_ptr<v8::BackingStore> store =
      v8::SharedArrayBuffer::NewBackingStore(address, static_cast<size_t>(length), Unmap, nullptr);
  v8::Local<v8::Value> buffer = v8::SharedArrayBuffer::New(isolate, std::move(store));
  v8::Local<v8::Value> escaped = scope.Escape(buffer);
  napi_value result;
  std::memcpy(&result, &escaped, sizeof result);
  return Napi::Value(env, result);
}

// msyncShared(buffer): writes the mapping's dirty pages back to the file and waits.
Napi::Value JsMsyncShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value value = info[0];
  v8::Local<v8::Value> local;
  std::memcpy(static_cast<void*>(&local), &value, sizeof value);
  if (local.IsEmpty() || !local->IsSharedArrayBuffer()) {
    Napi::TypeError::New(env, "msyncShared(sharedArrayBuffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::shared_ptr<v8::BackingStore> store = local.As<v8::SharedArrayBuffer>()->GetBackingStore();
  if (msync(store->Data(), store->ByteLength(), MS_SYNC) != 0) {
    SystemError(env, errno, "msync").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mapSharedFile", Napi::Function::New(env, JsMapSharedFile, "mapSharedFile"));
  exports.Set("msyncShared", Napi::Function::New(env, JsMsyncShared, "msyncShared"));
}

}  // namespace

R3MAP_MODULE(shared_file, Init);

}  // namespace r3map::shared_file
