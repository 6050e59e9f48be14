// Magnetic tape ioctls for tapisk: MTIOCTOP, MTIOCGET, MTIOCPOS with the
// structs from <sys/mtio.h>, so the layouts are right on every architecture
// (mt_count is an int, mt_resid/mt_dsreg/... are longs: 8 bytes on x86-64 and
// arm64). Tape operations can take minutes (rewind, seek), so each runs on its
// own native thread.
#include <sys/ioctl.h>
#include <sys/mtio.h>
#include <unistd.h>

#include <vector>

#include "fuse_thread_promise.h"
#include "module.h"
#include "typed_array.h"

namespace r3map::mtio {
namespace {

// The kernel's LP64 layouts (x86-64 and arm64 alike): a wrong struct would
// change the ioctl numbers, which encode the size.
static_assert(sizeof(long) != 8 || sizeof(mtop) == 8, "struct mtop: short op, int count");
static_assert(sizeof(long) != 8 || sizeof(mtget) == 48, "struct mtget: long type, resid, dsreg, gstat, erreg; int fileno, blkno");
static_assert(sizeof(long) != 8 || sizeof(mtpos) == 8, "struct mtpos: long blkno");

Napi::Value JsOperation(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  mtop op{};
  op.mt_op = static_cast<short>(info[1].As<Napi::Number>().Int32Value());
  op.mt_count = info[2].As<Napi::Number>().Int32Value();
  return RunOnThread(info.Env(), "r3map-mtioctop", [fd, op]() mutable {
    if (ioctl(fd, MTIOCTOP, &op) != 0) return ThreadResult::Fail(errno, "MTIOCTOP");
    return ThreadResult{};
  });
}

Napi::Value JsStatus(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  return RunOnThread(info.Env(), "r3map-mtiocget", [fd] {
    mtget status{};
    if (ioctl(fd, MTIOCGET, &status) != 0) return ThreadResult::Fail(errno, "MTIOCGET");
    return ThreadResult{0, {}, [status](Napi::Env env) {
                          Napi::Object o = Napi::Object::New(env);
                          o.Set("type", Napi::Number::New(env, static_cast<double>(status.mt_type)));
                          o.Set("residual", Napi::Number::New(env, static_cast<double>(status.mt_resid)));
                          o.Set("dsreg", Napi::Number::New(env, static_cast<double>(status.mt_dsreg)));
                          o.Set("gstat", Napi::Number::New(env, static_cast<double>(status.mt_gstat)));
                          o.Set("erreg", Napi::Number::New(env, static_cast<double>(status.mt_erreg)));
                          o.Set("fileNumber", Napi::Number::New(env, static_cast<double>(status.mt_fileno)));
                          o.Set("blockNumber", Napi::Number::New(env, static_cast<double>(status.mt_blkno)));
                          // The st driver's drive settings: 0 bytes means variable-size records.
                          o.Set("blockSize", Napi::Number::New(env, static_cast<double>(
                                                                        (status.mt_dsreg & MT_ST_BLKSIZE_MASK) >>
                                                                        MT_ST_BLKSIZE_SHIFT)));
                          o.Set("density", Napi::Number::New(env, static_cast<double>(
                                                                     (status.mt_dsreg & MT_ST_DENSITY_MASK) >>
                                                                     MT_ST_DENSITY_SHIFT)));
                          return o;
                        }};
  });
}

Napi::Value JsPosition(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  return RunOnThread(info.Env(), "r3map-mtiocpos", [fd] {
    mtpos position{};
    if (ioctl(fd, MTIOCPOS, &position) != 0) return ThreadResult::Fail(errno, "MTIOCPOS");
    double block = static_cast<double>(position.mt_blkno);
    return ThreadResult{0, {}, [block](Napi::Env env) { return Napi::Number::New(env, block); }};
  });
}

// mtRead(fd, length): one read(2) of a record, on its own thread (a read
// after a seek waits for the tape to get there). Resolves with a copy of the
// bytes read: the caller's buffer is not touched off the JS thread. In
// fixed-block mode `length` is a multiple of the block size and the driver
// reads that many blocks; 0 bytes means a file mark or the end of data.
Napi::Value JsRead(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  size_t length = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  return RunOnThread(info.Env(), "r3map-mtread", [fd, length] {
    auto bytes = std::make_shared<std::vector<uint8_t>>(length);
    ssize_t n;
    do n = read(fd, bytes->data(), length);
    while (n < 0 && errno == EINTR);
    if (n < 0) return ThreadResult::Fail(errno, "read");
    bytes->resize(static_cast<size_t>(n));
    return ThreadResult{0, {}, [bytes](Napi::Env env) -> Napi::Value {
                          return Napi::Buffer<uint8_t>::Copy(env, bytes->data(), bytes->size());
                        }};
  });
}

// mtWrite(fd, bytes): one write(2) of a record (or, in fixed-block mode, of
// as many blocks as `bytes` holds), on its own thread. The bytes are copied
// first, on the JS thread. Resolves with the count written.
Napi::Value JsWrite(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::TypedArray array = info[1].As<Napi::TypedArray>();
  const uint8_t* start = TypedArrayBytes(array);
  auto bytes = std::make_shared<std::vector<uint8_t>>(start, start + array.ByteLength());
  return RunOnThread(info.Env(), "r3map-mtwrite", [fd, bytes] {
    ssize_t n;
    do n = write(fd, bytes->data(), bytes->size());
    while (n < 0 && errno == EINTR);
    if (n < 0) return ThreadResult::Fail(errno, "write");
    double written = static_cast<double>(n);
    return ThreadResult{0, {}, [written](Napi::Env env) { return Napi::Number::New(env, written); }};
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mtOperation", Napi::Function::New(env, JsOperation, "mtOperation"));
  exports.Set("mtStatus", Napi::Function::New(env, JsStatus, "mtStatus"));
  exports.Set("mtPosition", Napi::Function::New(env, JsPosition, "mtPosition"));
  exports.Set("mtRead", Napi::Function::New(env, JsRead, "mtRead"));
  exports.Set("mtWrite", Napi::Function::New(env, JsWrite, "mtWrite"));
  Napi::Object ops = Napi::Object::New(env);
  const std::pair<const char*, int> known[] = {
      {"reset", MTRESET}, {"forwardFile", MTFSF},   {"backwardFile", MTBSF},  {"forwardRecord", MTFSR},
      {"backwardRecord", MTBSR}, {"writeFileMark", MTWEOF}, {"rewind", MTREW},  {"offline", MTOFFL},
      {"nop", MTNOP},     {"retension", MTRETEN}, {"endOfMedia", MTEOM},  {"erase", MTERASE},
      {"setBlockSize", MTSETBLK}, {"setDensity", MTSETDENSITY}, {"seek", MTSEEK}, {"tell", MTTELL},
      {"lock", MTLOCK},   {"unlock", MTUNLOCK}, {"load", MTLOAD},       {"unload", MTUNLOAD},
      {"compression", MTCOMPRESSION}, {"setPartition", MTSETPART},
  };
  for (const auto& [name, value] : known) ops.Set(name, Napi::Number::New(env, value));
  exports.Set("mtOperations", ops);
}

}  // namespace

R3MAP_MODULE(mtio, Init);

}  // namespace r3map::mtio
