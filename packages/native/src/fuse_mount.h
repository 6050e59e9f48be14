// The kernel plumbing of a FUSE mount: mounting a connection at a directory,
// cloning channels for more request threads, finding and clearing a stale
// mount left by a dead server, tuning readahead, and aborting a connection
// through the fuse control file system.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace r3map::fuse {

// Mounts at `path`: "major:minor" and file system type of each.
std::vector<std::pair<std::string, std::string>> MountsAt(const std::string& path);

// A FUSE mount at `path` whose server died answers ENOTCONN: detach it
// lazily (0). A live one is someone else's: EBUSY. Otherwise an errno.
int ClearStaleMount(const std::string& path);

// Opens /dev/fuse and mounts it at `path` as "fuse.<fsName>"; `*fd` is the
// connection, `*device` the mount's "major:minor". 0, or an errno with
// `*what` naming the failing step.
int MountConnection(const std::string& path, const std::string& fsName, int* fd, std::string* device,
                    std::string* what);

// Another channel to the connection on `fd` (FUSE_DEV_IOC_CLONE), or -1.
int CloneChannel(int fd);

// The mount's readahead (/sys/class/bdi/<device>/read_ahead_kb).
void SetReadAhead(const std::string& device, uint32_t kb);

// Aborts the connection through the fuse control file system, mounting it if
// needed: the only way to wake request threads while the file is still held
// open (by a loop device, a lazy unmount, a process).
void AbortConnection(const std::string& device);

}  // namespace r3map::fuse
