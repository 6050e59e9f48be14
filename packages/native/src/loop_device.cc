// Loop devices: attach a file to a free /dev/loopN with LOOP_CONFIGURE, read
// its status, detach. Every call runs on its own native thread: attaching or
// detaching a loop device over a FUSE file can wait for I/O that the JS thread
// must answer.
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <cstdint>
#include <string>

#include "fuse_thread_promise.h"
#include "module.h"

namespace r3map::loop {
namespace {

constexpr int kAttachAttempts = 32;

struct AttachOptions {
  bool readOnly = false, directIo = false, autoclear = false, partscan = false;
  uint32_t blockSize = 0;
};

std::string DevicePath(int number) { return "/dev/loop" + std::to_string(number); }

// Opens /dev/loopN; the node can lag behind LOOP_CTL_GET_FREE on a busy
// system, so create it if devtmpfs has not yet.
int OpenLoop(int number, int flags) {
  std::string path = DevicePath(number);
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && mknod(path.c_str(), S_IFBLK | 0660, makedev(7, number)) == 0) {
    fd = open(path.c_str(), flags | O_CLOEXEC);
  }
  return fd;
}

ThreadResult Attach(const std::string& file, AttachOptions options) {
  int backing = open(file.c_str(), (options.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (backing < 0) return ThreadResult::Fail(errno, "open " + file);
  int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (control < 0) {
    int err = errno;
    close(backing);
    return ThreadResult::Fail(err, "open /dev/loop-control");
  }
  loop_config config{};
  config.fd = static_cast<uint32_t>(backing);
  config.block_size = options.blockSize;
  config.info.lo_flags = (options.readOnly ? LO_FLAGS_READ_ONLY : 0) | (options.autoclear ? LO_FLAGS_AUTOCLEAR : 0) |
                         (options.partscan ? LO_FLAGS_PARTSCAN : 0) | (options.directIo ? LO_FLAGS_DIRECT_IO : 0);
  std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);

  ThreadResult result = ThreadResult::Fail(EBUSY, "LOOP_CONFIGURE (every free loop device was taken meanwhile)");
  for (int attempt = 0; attempt < kAttachAttempts; attempt++) {
    int number = ioctl(control, LOOP_CTL_GET_FREE);
    if (number < 0) {
      result = ThreadResult::Fail(errno, "LOOP_CTL_GET_FREE");
      break;
    }
    int device = OpenLoop(number, options.readOnly ? O_RDONLY : O_RDWR);
    if (device < 0) {
      if (errno == EBUSY || errno == ENXIO) continue;  // raced with another attacher or a removal
      result = ThreadResult::Fail(errno, "open " + DevicePath(number));
      break;
    }
    if (ioctl(device, LOOP_CONFIGURE, &config) == 0) {
      result = ThreadResult{0, {}, [number, device](Napi::Env env) {
                              Napi::Object o = Napi::Object::New(env);
                              o.Set("number", Napi::Number::New(env, number));
                              o.Set("fd", Napi::Number::New(env, device));
                              return o;
                            }};
      break;
    }
    int err = errno;
    close(device);
    if (err != EBUSY) {
      result = ThreadResult::Fail(err, "LOOP_CONFIGURE " + DevicePath(number));
      break;
    }
  }
  close(control);
  close(backing);  // the loop device holds its own reference
  return result;
}

// The device is free once sysfs shows no backing file.
bool IsDetached(int number) {
  std::string path = "/sys/block/loop" + std::to_string(number) + "/loop/backing_file";
  return access(path.c_str(), F_OK) != 0;
}

ThreadResult Detach(int fd, int number, bool clear) {
  if (clear && ioctl(fd, LOOP_CLR_FD) != 0 && errno != ENXIO) {
    int err = errno;
    close(fd);
    return ThreadResult::Fail(err, "LOOP_CLR_FD " + DevicePath(number));
  }
  // The kernel detaches at the last close; if nobody else holds the device,
  // that is this one.
  close(fd);
  // The release path clears the device; give a concurrent opener (udev's
  // probe) a moment to let go before reporting it still attached.
  bool detached = IsDetached(number);
  for (int i = 0; i < 200 && !detached; i++) {
    usleep(5000);
    detached = IsDetached(number);
  }
  return ThreadResult{0, {}, [detached](Napi::Env env) { return Napi::Boolean::New(env, detached); }};
}

ThreadResult Status(const std::string& device) {
  int fd = open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ThreadResult::Fail(errno, "open " + device);
  loop_info64 info{};
  int rc = ioctl(fd, LOOP_GET_STATUS64, &info);
  int err = errno;
  close(fd);
  if (rc != 0) return ThreadResult::Fail(err, "LOOP_GET_STATUS64 " + device);
  int number = static_cast<int>(info.lo_number);
  // sysfs has the full path; lo_file_name is cut at 64 bytes.
  std::string backing(reinterpret_cast<const char*>(info.lo_file_name));
  std::string sysfs = "/sys/block/loop" + std::to_string(info.lo_number) + "/loop/backing_file";
  if (int s = open(sysfs.c_str(), O_RDONLY | O_CLOEXEC); s >= 0) {
    char buffer[4096];
    ssize_t n = read(s, buffer, sizeof(buffer) - 1);
    if (n > 0) backing.assign(buffer, static_cast<size_t>(buffer[n - 1] == '\n' ? n - 1 : n));
    close(s);
  }
  return ThreadResult{0, {}, [info, backing, number](Napi::Env env) {
                        Napi::Object o = Napi::Object::New(env);
                        o.Set("number", Napi::Number::New(env, number));
                        o.Set("backingFile", Napi::String::New(env, backing));
                        o.Set("offset", Napi::Number::New(env, static_cast<double>(info.lo_offset)));
                        o.Set("sizeLimit", Napi::Number::New(env, static_cast<double>(info.lo_sizelimit)));
                        o.Set("flags", Napi::Number::New(env, info.lo_flags));
                        return o;
                      }};
}

Napi::Value JsAttach(const Napi::CallbackInfo& info) {
  std::string file = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = info[1].As<Napi::Object>();
  AttachOptions options;
  options.readOnly = o.Get("readOnly").ToBoolean();
  options.directIo = o.Get("directIo").ToBoolean();
  options.autoclear = o.Get("autoclear").ToBoolean();
  options.partscan = o.Get("partscan").ToBoolean();
  options.blockSize = o.Get("blockSize").ToNumber().Uint32Value();
  return RunOnThread(info.Env(), "r3map-loop-attach", [file, options] { return Attach(file, options); });
}

Napi::Value JsDetach(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  int number = info[1].As<Napi::Number>().Int32Value();
  bool clear = info[2].ToBoolean();
  return RunOnThread(info.Env(), "r3map-loop-detach", [fd, number, clear] { return Detach(fd, number, clear); });
}

Napi::Value JsStatus(const Napi::CallbackInfo& info) {
  std::string device = info[0].As<Napi::String>().Utf8Value();
  return RunOnThread(info.Env(), "r3map-loop-status", [device] { return Status(device); });
}

// loopFlushBuffers(fd): writes back and drops the device's buffer cache
// (BLKFLSBUF), so reads after the data behind it changed see the new bytes.
// On a native thread: writing back reaches a FUSE server that may run on
// the calling thread.
Napi::Value JsFlushBuffers(const Napi::CallbackInfo& info) {
  int fd = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return RunOnThread(info.Env(), "r3map-loop-flsbuf", [err = errno] { return ThreadResult::Fail(err, "dup"); });
  return RunOnThread(info.Env(), "r3map-loop-flsbuf", [fd] {
    int rc = ioctl(fd, BLKFLSBUF, 0);
    int err = errno;
    close(fd);
    return rc != 0 ? ThreadResult::Fail(err, "BLKFLSBUF") : ThreadResult{};
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("loopFlushBuffers", Napi::Function::New(env, JsFlushBuffers, "loopFlushBuffers"));
  exports.Set("loopAttach", Napi::Function::New(env, JsAttach, "loopAttach"));
  exports.Set("loopDetach", Napi::Function::New(env, JsDetach, "loopDetach"));
  exports.Set("loopStatus", Napi::Function::New(env, JsStatus, "loopStatus"));
  Napi::Object flags = Napi::Object::New(env);
  flags.Set("readOnly", Napi::Number::New(env, LO_FLAGS_READ_ONLY));
  flags.Set("autoclear", Napi::Number::New(env, LO_FLAGS_AUTOCLEAR));
  flags.Set("partscan", Napi::Number::New(env, LO_FLAGS_PARTSCAN));
  flags.Set("directIo", Napi::Number::New(env, LO_FLAGS_DIRECT_IO));
  exports.Set("loopFlags", flags);
}

}  // namespace

R3MAP_MODULE(loop_device, Init);

}  // namespace r3map::loop
