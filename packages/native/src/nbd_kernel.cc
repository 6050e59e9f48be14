// Kernel NBD client (hosts with /dev/nbd*): hands a socket that has finished
// the NBD handshake to the kernel with the classic ioctl sequence. NBD_DO_IT
// blocks for the life of the connection, so it runs on its own native thread;
// readiness is detected by polling sysfs (/sys/block/nbdN/pid).
#include <fcntl.h>
#include <linux/nbd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "fuse_thread_promise.h"
#include "module.h"

namespace r3map::nbdkernel {
namespace {

struct Connection {
  int fd = -1;
  std::string sysfs;  // /sys/block/nbdN
  std::thread doIt;
  std::mutex mutex;
  bool finished = false;
  int doItError = 0;
};

std::mutex gMutex;
std::map<int, std::shared_ptr<Connection>> gConnections;
int gNextHandle = 1;

struct ConnectOptions {
  std::string device;
  int socketFd;
  uint64_t size;
  uint64_t blockSize;
  uint64_t flags;
  uint64_t timeoutSeconds;
};

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

ThreadResult Connect(ConnectOptions o) {
  auto c = std::make_shared<Connection>();
  c->fd = open(o.device.c_str(), O_RDWR | O_CLOEXEC);
  if (c->fd < 0) return ThreadResult::Fail(errno, "open " + o.device);
  c->sysfs = "/sys/block/" + o.device.substr(o.device.rfind('/') + 1);
  struct Step {
    unsigned long request;
    unsigned long argument;
    const char* name;
  };
  const Step steps[] = {
      {NBD_CLEAR_SOCK, 0, "NBD_CLEAR_SOCK"},
      {NBD_SET_BLKSIZE, o.blockSize, "NBD_SET_BLKSIZE"},
      {NBD_SET_SIZE_BLOCKS, o.size / o.blockSize, "NBD_SET_SIZE_BLOCKS"},
      {NBD_SET_TIMEOUT, o.timeoutSeconds, "NBD_SET_TIMEOUT"},
      {NBD_SET_FLAGS, o.flags, "NBD_SET_FLAGS"},
      {NBD_SET_SOCK, static_cast<unsigned long>(o.socketFd), "NBD_SET_SOCK"},
  };
  for (const Step& step : steps) {
    if (ioctl(c->fd, step.request, step.argument) != 0) {
      int err = errno;
      ioctl(c->fd, NBD_CLEAR_SOCK);
      close(c->fd);
      return ThreadResult::Fail(err, std::string(step.name) + " " + o.device);
    }
  }
  c->doIt = std::thread([c] {
    int rc = ioctl(c->fd, NBD_DO_IT);
    int err = rc == 0 ? 0 : errno;
    ioctl(c->fd, NBD_CLEAR_QUE);
    ioctl(c->fd, NBD_CLEAR_SOCK);
    std::lock_guard<std::mutex> lock(c->mutex);
    c->finished = true;
    c->doItError = err;
  });
  // Ready once the kernel publishes the serving pid; fail if DO_IT returned.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(c->mutex);
      if (c->finished) {
        int err = c->doItError != 0 ? c->doItError : EIO;
        c->doIt.join();
        close(c->fd);
        return ThreadResult::Fail(err, "NBD_DO_IT " + o.device);
      }
    }
    if (Exists(c->sysfs + "/pid")) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ioctl(c->fd, NBD_DISCONNECT);
      c->doIt.join();
      close(c->fd);
      return ThreadResult::Fail(ETIMEDOUT, "waiting for " + c->sysfs + "/pid");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int handle;
  {
    std::lock_guard<std::mutex> lock(gMutex);
    handle = gNextHandle++;
    gConnections[handle] = c;
  }
  return ThreadResult{0, {}, [handle](Napi::Env env) { return Napi::Number::New(env, handle); }};
}

ThreadResult Disconnect(int handle) {
  std::shared_ptr<Connection> c;
  {
    std::lock_guard<std::mutex> lock(gMutex);
    auto it = gConnections.find(handle);
    if (it == gConnections.end()) return ThreadResult{};
    c = it->second;
    gConnections.erase(it);
  }
  ioctl(c->fd, NBD_DISCONNECT);
  c->doIt.join();
  close(c->fd);
  return ThreadResult{};
}

Napi::Value JsConnect(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  ConnectOptions options{
      o.Get("device").As<Napi::String>().Utf8Value(),
      o.Get("socketFd").As<Napi::Number>().Int32Value(),
      static_cast<uint64_t>(o.Get("size").As<Napi::Number>().Int64Value()),
      static_cast<uint64_t>(o.Get("blockSize").As<Napi::Number>().Int64Value()),
      static_cast<uint64_t>(o.Get("flags").As<Napi::Number>().Int64Value()),
      static_cast<uint64_t>(o.Get("timeoutSeconds").As<Napi::Number>().Int64Value()),
  };
  return RunOnThread(info.Env(), "r3map-nbd-connect", [options] { return Connect(options); });
}

Napi::Value JsDisconnect(const Napi::CallbackInfo& info) {
  int handle = info[0].As<Napi::Number>().Int32Value();
  return RunOnThread(info.Env(), "r3map-nbd-disconnect", [handle] { return Disconnect(handle); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("nbdKernelConnect", Napi::Function::New(env, JsConnect, "nbdKernelConnect"));
  exports.Set("nbdKernelDisconnect", Napi::Function::New(env, JsDisconnect, "nbdKernelDisconnect"));
}

}  // namespace

R3MAP_MODULE(nbd_kernel, Init);

}  // namespace r3map::nbdkernel
