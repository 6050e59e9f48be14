// mmap of files and block devices as ArrayBuffers: mmapFile(fd, offset,
// length, shared, writable) returns a handle with view/sync/lock/unlock/close.
// close() detaches the views before unmapping.
#include <sys/mman.h>

#include "module.h"
#include "uffd_common.h"

namespace r3map {
namespace {

class MappedFile : public Napi::ObjectWrap<MappedFile> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "MappedFile",
                       {
                           InstanceMethod<&MappedFile::View>("view"),
                           InstanceMethod<&MappedFile::Sync>("sync"),
                           InstanceMethod<&MappedFile::Lock>("lock"),
                           InstanceMethod<&MappedFile::Unlock>("unlock"),
                           InstanceMethod<&MappedFile::Close>("close"),
                       });
  }

  // new MappedFile({fd, offset, length, shared, writable})
  explicit MappedFile(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MappedFile>(info) {
    Napi::Env env = info.Env();
    Napi::Object options = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    uint64_t fd, offset = 0, length;
    static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    if (!GetSize(options, "fd", &fd) || (options.Has("offset") && !GetSize(options, "offset", &offset)) ||
        !GetSize(options, "length", &length) || length == 0 || offset % page != 0) {
      ThrowCode(env, "ERR_INVALID_ARGUMENT", "mapFile needs an fd, a positive length and a page-aligned offset");
      return;
    }
    const bool shared = options.Get("shared").ToBoolean();
    const bool writable = options.Get("writable").ToBoolean();
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void* address = mmap(nullptr, length, prot, shared ? MAP_SHARED : MAP_PRIVATE, static_cast<int>(fd),
                         static_cast<off_t>(offset));
    if (address == MAP_FAILED) {
      ThrowErrno(env, errno, "mmap");
      return;
    }
    mapping_ = std::make_shared<Mapping>(address, length);
  }

 private:
  bool Range(const Napi::CallbackInfo& info, uint64_t* offset, uint64_t* length) {
    Napi::Env env = info.Env();
    if (!mapping_ || mapping_->closed()) {
      ThrowCode(env, "ERR_CLOSED", "the mapping is closed; map the file again");
      return false;
    }
    Napi::Object args = Napi::Object::New(env);
    args.Set("offset", info[0].IsUndefined() ? Napi::Number::New(env, 0) : info[0]);
    args.Set("length", info[1].IsUndefined() ? Napi::Number::New(env, static_cast<double>(mapping_->length())) : info[1]);
    static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    if (!GetSize(args, "offset", offset) || !GetSize(args, "length", length) ||
        *offset + *length > mapping_->length()) {
      ThrowCode(env, "ERR_OUT_OF_RANGE", "range outside the mapping");
      return false;
    }
    // msync and mlock work on whole pages: widen to the enclosing pages.
    uint64_t aligned = *offset / page * page;
    *length += *offset - aligned;
    *offset = aligned;
    return true;
  }

  // view(offset?, length?)
  Napi::Value View(const Napi::CallbackInfo& info) {
    if (!mapping_) return info.Env().Undefined();
    if (info.Length() < 2) return Mapping::View(info.Env(), mapping_, true);
    Napi::Object args = Napi::Object::New(info.Env());
    args.Set("offset", info[0]);
    args.Set("length", info[1]);
    uint64_t offset, length;
    if (!GetSize(args, "offset", &offset) || !GetSize(args, "length", &length)) {
      ThrowCode(info.Env(), "ERR_INVALID_ARGUMENT", "view(offset, length) needs non-negative integers");
      return info.Env().Undefined();
    }
    return Mapping::View(info.Env(), mapping_, true, offset, length);
  }

  // sync(offset?, length?, async?)
  Napi::Value Sync(const Napi::CallbackInfo& info) {
    uint64_t offset, length;
    if (!Range(info, &offset, &length)) return info.Env().Undefined();
    int flags = info[2].ToBoolean() ? MS_ASYNC : MS_SYNC;
    if (msync(mapping_->address() + offset, length, flags) != 0) ThrowErrno(info.Env(), errno, "msync");
    return info.Env().Undefined();
  }

  Napi::Value Lock(const Napi::CallbackInfo& info) {
    uint64_t offset, length;
    if (!Range(info, &offset, &length)) return info.Env().Undefined();
    if (mlock(mapping_->address() + offset, length) != 0) {
      int err = errno;
      if (err == EPERM || err == ENOMEM) {
        ThrowCode(info.Env(), err == EPERM ? "ERR_PERMISSION" : "ERR_NO_SPACE",
                  "mlock refused: run as root (CAP_IPC_LOCK) or raise RLIMIT_MEMLOCK (ulimit -l)", err);
      } else {
        ThrowErrno(info.Env(), err, "mlock");
      }
    }
    return info.Env().Undefined();
  }

  Napi::Value Unlock(const Napi::CallbackInfo& info) {
    uint64_t offset, length;
    if (!Range(info, &offset, &length)) return info.Env().Undefined();
    if (munlock(mapping_->address() + offset, length) != 0) ThrowErrno(info.Env(), errno, "munlock");
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (mapping_) mapping_->Close(info.Env());
    return info.Env().Undefined();
  }

  std::shared_ptr<Mapping> mapping_;
};

void Init(Napi::Env env, Napi::Object exports) { exports.Set("MappedFile", MappedFile::Define(env)); }

}  // namespace

R3MAP_MODULE(mmap_file, Init);

}  // namespace r3map
