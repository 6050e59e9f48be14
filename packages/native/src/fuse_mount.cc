#include "fuse_mount.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace r3map::fuse {
namespace {

bool WriteSmallFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> MountsAt(const std::string& path) {
  std::vector<std::pair<std::string, std::string>> found;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point != path) continue;
    std::string token;
    while (fields >> token && token != "-") {
    }
    std::string fstype;
    fields >> fstype;
    found.emplace_back(dev, fstype);
  }
  return found;
}

int ClearStaleMount(const std::string& path) {
  auto mounts = MountsAt(path);
  if (mounts.empty()) return 0;
  struct stat st;
  if (stat(path.c_str(), &st) == 0) return EBUSY;
  if (errno != ENOTCONN) return errno;
  for (size_t i = 0; i < mounts.size(); i++) {
    if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL) return errno;
  }
  return 0;
}

int MountConnection(const std::string& path, const std::string& fsName, int* fd, std::string* device,
                    std::string* what) {
  int connection = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (connection < 0) {
    *what = "open /dev/fuse";
    return errno;
  }
  std::string options = "fd=" + std::to_string(connection) + ",rootmode=40000,user_id=0,group_id=0,allow_other";
  std::string type = "fuse." + fsName;
  if (mount(fsName.c_str(), path.c_str(), type.c_str(), MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    int err = errno;
    close(connection);
    *what = "mount " + path;
    return err;
  }
  *fd = connection;
  auto mounts = MountsAt(path);
  if (!mounts.empty()) *device = mounts.back().first;
  return 0;
}

int CloneChannel(int fd) {
  int clone = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  uint32_t master = static_cast<uint32_t>(fd);
  if (clone < 0 || ioctl(clone, FUSE_DEV_IOC_CLONE, &master) != 0) {
    if (clone >= 0) close(clone);
    return -1;
  }
  return clone;
}

void SetReadAhead(const std::string& device, uint32_t kb) {
  if (kb > 0 && !device.empty()) WriteSmallFile("/sys/class/bdi/" + device + "/read_ahead_kb", std::to_string(kb));
}

void AbortConnection(const std::string& device) {
  if (device.empty()) return;
  unsigned major = 0, minor = 0;
  if (std::sscanf(device.c_str(), "%u:%u", &major, &minor) != 2) return;
  std::string path = "/sys/fs/fuse/connections/" + std::to_string((major << 20) | minor) + "/abort";
  if (!WriteSmallFile(path, "1") && MountsAt("/sys/fs/fuse/connections").empty()) {
    mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);
    WriteSmallFile(path, "1");
  }
}

}  // namespace r3map::fuse
