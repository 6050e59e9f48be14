// The N-API wrapper of a FUSE session (fuse_session.h): options from
// JavaScript, a thread-safe function that hands forwarded requests to the
// JavaScript dispatcher, JavaScript's replies, and mounting, invalidating and
// unmounting on native threads (the JavaScript thread stays free to answer
// the requests those still need).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuse_session.h"
#include "fuse_thread_promise.h"
#include "module.h"
#include "typed_array.h"

namespace r3map::fuse {
namespace {

void CallJs(Napi::Env env, Napi::Function dispatch, void* context, Call* call);
using DispatchFn = Napi::TypedThreadSafeFunction<void, Call, CallJs>;

class Server : public Napi::ObjectWrap<Server> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FuseServer",
                       {
                           InstanceMethod("mount", &Server::Mount),
                           InstanceMethod("replyRead", &Server::ReplyRead),
                           InstanceMethod("replyWrite", &Server::ReplyWrite),
                           InstanceMethod("replyStatus", &Server::ReplyStatus),
                           InstanceMethod("invalidate", &Server::Invalidate),
                           InstanceMethod("setAccess", &Server::SetAccess),
                           InstanceMethod("close", &Server::Close),
                           InstanceMethod("closeSync", &Server::CloseSync),
                           InstanceMethod("stats", &Server::Stats),
                           InstanceMethod("ref", &Server::RefLoop),
                           InstanceMethod("unref", &Server::UnrefLoop),
                       });
  }

  explicit Server(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Server>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    SessionOptions options;
    options.mountPoint = o.Get("mountPoint").As<Napi::String>().Utf8Value();
    options.fsName = o.Get("fsName").As<Napi::String>().Utf8Value();
    options.file.name = o.Get("fileName").As<Napi::String>().Utf8Value();
    options.file.size = static_cast<uint64_t>(o.Get("size").As<Napi::Number>().Int64Value());
    options.file.mode = o.Get("mode").As<Napi::Number>().Uint32Value();
    options.readOnly = o.Get("readOnly").As<Napi::Boolean>().Value();
    options.directIo = o.Get("directIo").As<Napi::Boolean>().Value();
    options.forwardFlush = o.Get("forwardFlush").As<Napi::Boolean>().Value();
    options.forwardFsync = o.Get("forwardFsync").As<Napi::Boolean>().Value();
    options.threads = o.Get("threads").As<Napi::Number>().Uint32Value();
    options.readAheadKb = o.Get("readAheadKb").As<Napi::Number>().Uint32Value();
    Napi::Value local = o.Get("local");
    if (local.IsObject()) ReadCache(local.As<Napi::Object>(), &options.cache);

    dispatch_ = DispatchFn::New(env, o.Get("dispatch").As<Napi::Function>(), "r3map-fuse", 0, 1, nullptr);
    dispatchLive_ = true;
    session_ = std::make_unique<Session>(std::move(options), [this](Call* call) {
      return dispatch_.NonBlockingCall(call) == napi_ok;
    });

    Napi::Value remote = o.Get("remote");
    if (remote.IsObject()) {
      Napi::Object r = remote.As<Napi::Object>();
      // Our own descriptor for the socket: JavaScript closes its handle once this returns.
      int fd = fcntl(r.Get("fd").As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) {
        Napi::Error::New(env, std::string("dup of the NBD socket: ") + std::strerror(errno)).ThrowAsJavaScriptException();
        return;
      }
      session_->ReadMissesFrom(fd, r.Get("timeoutMs").As<Napi::Number>().Uint32Value(),
                               r.Get("minimumBlockSize").As<Napi::Number>().Uint32Value(),
                               r.Get("maximumBlockSize").As<Napi::Number>().Uint32Value());
    }
  }

  ~Server() override {
    if (dispatchLive_) dispatch_.Release();
  }

 private:
  // The local cache's memory and bitmaps, kept alive with the server.
  void ReadCache(Napi::Object l, LocalCache* cache) {
    cache->chunkSize = static_cast<uint64_t>(l.Get("chunkSize").As<Napi::Number>().Int64Value());
    if (!KeepWords(l.Get("bitmap"), &cache->bitmap, &cache->bitmapWords)) cache->present = true;
    Napi::Value segments = l.Get("segments");
    if (segments.IsArray()) {
      Napi::Array a = segments.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::TypedArray t = a.Get(i).As<Napi::TypedArray>();
        uint8_t* base = TypedArrayBytes(t);
        cache->segments.emplace_back(base, t.ByteLength());
        if (l.Get("hugePages").ToBoolean()) AdviseHugePages(base, t.ByteLength());
        keep_.push_back(Napi::Persistent(t.As<Napi::Object>()));
      }
      cache->segmentSize = static_cast<uint64_t>(l.Get("segmentSize").As<Napi::Number>().Int64Value());
    }
    Napi::Value fd = l.Get("fd");
    if (fd.IsNumber()) cache->fd = fd.As<Napi::Number>().Int32Value();
    KeepWords(l.Get("inFlight"), &cache->inFlight, &cache->inFlightWords);
    KeepWords(l.Get("dirty"), &cache->dirty, &cache->dirtyWords);
  }

  // A shared bitmap given as a typed array: its words. False when absent.
  bool KeepWords(Napi::Value value, uint32_t** words, size_t* count) {
    if (!value.IsTypedArray()) return false;
    Napi::TypedArray t = value.As<Napi::TypedArray>();
    *words = reinterpret_cast<uint32_t*>(TypedArrayBytes(t));
    *count = t.ByteLength() / 4;
    keep_.push_back(Napi::Persistent(t.As<Napi::Object>()));
    return true;
  }

  // Runs on the JS thread once the request threads are gone.
  void Finish(Napi::Env env) {
    session_->CloseChannels();
    if (dispatchLive_) {
      dispatch_.Release();
      dispatchLive_ = false;
    }
    keep_.clear();
    if (cleanupHook_) {
      napi_remove_env_cleanup_hook(env, &Server::OnEnvCleanup, this);
      cleanupHook_ = false;
    }
    if (selfRef_) {
      selfRef_ = false;
      Unref();
    }
  }

  static void OnEnvCleanup(void* self) {
    auto* server = static_cast<Server*>(self);
    server->cleanupHook_ = false;
    server->session_->Teardown(false);
    server->session_->CloseChannels();
  }

  // ---- JS methods ----------------------------------------------------------

  Napi::Value Mount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (mounted_) {
      Napi::Error::New(env, "already mounted").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    mounted_ = true;
    Ref();
    selfRef_ = true;
    napi_add_env_cleanup_hook(env, &Server::OnEnvCleanup, this);
    cleanupHook_ = true;
    Session* session = session_.get();
    return RunOnThread(env, "r3map-fuse-mount", [session] {
      std::string what;
      if (int err = session->Mount(&what); err != 0) return ThreadResult::Fail(err, what);
      std::string device = session->device();
      return ThreadResult{0, {}, [device](Napi::Env env) { return Napi::String::New(env, device); }};
    });
  }

  // replyRead(channel, unique, errno, data?: Uint8Array, offset, length)
  // Without data, the range is answered from the local cache (JS stored it).
  Napi::Value ReplyRead(const Napi::CallbackInfo& info) {
    uint32_t channel = info[0].As<Napi::Number>().Uint32Value();
    uint64_t unique = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    int error = info[2].As<Napi::Number>().Int32Value();
    const uint8_t* data = nullptr;
    size_t size = 0;
    if (info[3].IsTypedArray()) {
      Napi::TypedArray t = info[3].As<Napi::TypedArray>();
      data = TypedArrayBytes(t);
      size = t.ByteLength();
    }
    uint64_t offset = info[4].IsNumber() ? static_cast<uint64_t>(info[4].As<Napi::Number>().Int64Value()) : 0;
    uint32_t length = info[5].IsNumber() ? info[5].As<Napi::Number>().Uint32Value() : 0;
    session_->ReplyRead(channel, unique, error, data, size, offset, length);
    return info.Env().Undefined();
  }

  // replyWrite(channel, unique, errno, written)
  Napi::Value ReplyWrite(const Napi::CallbackInfo& info) {
    session_->ReplyWrite(info[0].As<Napi::Number>().Uint32Value(),
                         static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()),
                         info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }

  // replyStatus(channel, unique, errno)
  Napi::Value ReplyStatus(const Napi::CallbackInfo& info) {
    session_->ReplyStatus(info[0].As<Napi::Number>().Uint32Value(),
                          static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()),
                          info[2].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }

  // setAccess(kServe | kForwardWrites | kForwardAll)
  Napi::Value SetAccess(const Napi::CallbackInfo& info) {
    session_->SetAccess(static_cast<uint8_t>(std::min<uint32_t>(info[0].As<Napi::Number>().Uint32Value(), 255)));
    return info.Env().Undefined();
  }

  // invalidate(offset, length): drops the kernel's cached pages of the file
  // in that range (length 0: to the end), so the next read of it reaches us:
  // the file is opened with FOPEN_KEEP_CACHE, so pages read once are
  // otherwise served by the kernel forever. On a native thread: the kernel
  // waits for pages that are locked, and a page may be locked by a READ that
  // only JavaScript — this thread — can answer.
  Napi::Value Invalidate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t offset = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
    int64_t length = info[1].As<Napi::Number>().Int64Value();
    // Our own descriptor: the connection's may be closed on this thread meanwhile.
    int fd = session_->DuplicateConnection();
    if (fd < 0) return RunOnThread(env, "r3map-fuse-invalidate", [] { return ThreadResult{}; });
    return RunOnThread(env, "r3map-fuse-invalidate", [fd, offset, length] {
      int err = NotifyInvalidate(fd, offset, length);
      close(fd);
      // ENOENT: the kernel holds nothing of the file (never looked up); ENODEV: unmounted meanwhile.
      if (err != 0 && err != ENOENT && err != ENODEV) return ThreadResult::Fail(err, "FUSE_NOTIFY_INVAL_INODE");
      return ThreadResult{};
    });
  }

  // close(): unmounts on a native thread (the JS thread stays free to answer
  // requests the unmount still needs), then releases everything here.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!mounted_ || closing_) return RunOnThread(env, "r3map-fuse-close", [] { return ThreadResult{}; });
    closing_ = true;
    Session* session = session_.get();
    Napi::Promise unmounted = RunOnThread(env, "r3map-fuse-close", [session] {
      session->Teardown(true);
      return ThreadResult{};
    });
    Napi::Function finish = Napi::Function::New(
        env,
        [this](const Napi::CallbackInfo& i) {
          Finish(i.Env());
          return i.Env().Undefined();
        },
        "finish");
    return unmounted.Get("then").As<Napi::Function>().Call(unmounted, {finish}).As<Napi::Promise>();
  }

  // closeSync(): for process exit; aborts outstanding requests.
  Napi::Value CloseSync(const Napi::CallbackInfo& info) {
    closing_ = true;
    session_->Teardown(false);
    Finish(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SessionStats s = session_->Stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("nativeReads", Napi::Number::New(env, static_cast<double>(s.nativeReads)));
    o.Set("forwardedReads", Napi::Number::New(env, static_cast<double>(s.forwardedReads)));
    o.Set("forwardedWrites", Napi::Number::New(env, static_cast<double>(s.forwardedWrites)));
    o.Set("nativeWrites", Napi::Number::New(env, static_cast<double>(s.nativeWrites)));
    o.Set("remoteReads", Napi::Number::New(env, static_cast<double>(s.remoteReads)));
    o.Set("channels", Napi::Number::New(env, static_cast<double>(s.channels)));
    return o;
  }

  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    if (dispatchLive_) dispatch_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    if (dispatchLive_) dispatch_.Unref(info.Env());
    return info.Env().Undefined();
  }

  std::unique_ptr<Session> session_;
  std::vector<Napi::ObjectReference> keep_;  // keeps the shared memory alive
  DispatchFn dispatch_;
  bool dispatchLive_ = false;
  bool mounted_ = false, closing_ = false, selfRef_ = false, cleanupHook_ = false;
};

// On the JS thread: dispatch(kind, channel, unique, offset, length, data?).
void CallJs(Napi::Env env, Napi::Function dispatch, void*, Call* call) {
  std::unique_ptr<Call> owned(call);
  if (env == nullptr) {
    std::free(call->data);
    return;
  }
  Napi::HandleScope scope(env);
  Napi::Value data = env.Undefined();
  if (call->data != nullptr) {
    data = Napi::Buffer<uint8_t>::New(env, call->data, call->length, [](Napi::Env, uint8_t* p) { std::free(p); });
  }
  // The TypeScript dispatcher never throws; if it did, the request would hang,
  // so the exception surfaces instead of being swallowed.
  dispatch.Call({Napi::Number::New(env, static_cast<double>(call->kind)),
                 Napi::Number::New(env, call->channel), Napi::Number::New(env, static_cast<double>(call->unique)),
                 Napi::Number::New(env, static_cast<double>(call->offset)), Napi::Number::New(env, call->length),
                 data});
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("FuseServer", Server::Define(env)); }

}  // namespace

R3MAP_MODULE(fuse_server, Init);

}  // namespace r3map::fuse
