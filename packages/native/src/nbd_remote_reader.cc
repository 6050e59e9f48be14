#include "nbd_remote_reader.h"

#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace r3map {

namespace {

constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr uint16_t kCmdRead = 0;
constexpr uint16_t kCmdDisconnect = 2;
// The receiver looks at the clock this often while reads are waiting.
constexpr int kPollSliceMs = 50;

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Waits until the socket is ready for `events` (POLLIN, POLLOUT); 0,
// ETIMEDOUT after `timeout_ms`, or an errno.
int WaitReady(int fd, short events, uint32_t timeout_ms) {
  pollfd p{fd, events, 0};
  int ready = poll(&p, 1, static_cast<int>(timeout_ms));
  if (ready == 0) return ETIMEDOUT;
  return ready < 0 && errno != EINTR ? errno : 0;
}

// Sends all of `data` on a non-blocking socket within `timeout_ms`; 0 or an errno.
int SendAll(int fd, const uint8_t* data, size_t length, uint32_t timeout_ms) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = send(fd, data + done, length - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      if (errno != EAGAIN) return errno;
      if (int err = WaitReady(fd, POLLOUT, timeout_ms)) return err;
    }
  }
  return 0;
}

// Receives exactly `length` bytes within `timeout_ms` of silence; 0 or an errno
// (ECONNRESET for a connection the server closed).
int ReceiveAll(int fd, uint8_t* into, size_t length, uint32_t timeout_ms, const std::atomic<bool>& stopping) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = recv(fd, into + done, length - done, MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      return ECONNRESET;
    } else if (errno != EINTR) {
      if (errno != EAGAIN) return errno;
      if (stopping.load(std::memory_order_acquire)) return ECANCELED;
      if (int err = WaitReady(fd, POLLIN, timeout_ms)) return err;
    }
  }
  return 0;
}

void PutRequest(uint8_t* out, uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length) {
  uint32_t magic = htobe32(kRequestMagic);
  uint16_t flags = 0, command = htobe16(type);
  uint64_t be_cookie = htobe64(cookie), be_offset = htobe64(offset);
  uint32_t be_length = htobe32(length);
  std::memcpy(out, &magic, 4);
  std::memcpy(out + 4, &flags, 2);
  std::memcpy(out + 6, &command, 2);
  std::memcpy(out + 8, &be_cookie, 8);
  std::memcpy(out + 16, &be_offset, 8);
  std::memcpy(out + 24, &be_length, 4);
}

}  // namespace

NbdRemoteReader::NbdRemoteReader(int fd, uint32_t timeout_ms, uint32_t min_block, uint32_t max_block,
                                 ReplyFn reply, FallbackFn fallback)
    : fd_(fd),
      timeout_ms_(timeout_ms == 0 ? 30000 : timeout_ms),
      min_block_(min_block == 0 ? 1 : min_block),
      max_block_(max_block),
      reply_(std::move(reply)),
      fallback_(std::move(fallback)) {
  fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
  receiver_ = std::thread([this] { Receive(); });
}

NbdRemoteReader::~NbdRemoteReader() { Stop(); }

bool NbdRemoteReader::Submit(uint32_t channel, uint64_t unique, uint64_t offset, uint32_t length) {
  if (length == 0 || length > max_block_ || offset % min_block_ != 0 || length % min_block_ != 0) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  if (dead_.load(std::memory_order_acquire)) return false;
  const uint64_t cookie = next_cookie_++;
  pending_.emplace(cookie, Pending{channel, unique, offset, length});
  uint8_t request[28];
  PutRequest(request, kCmdRead, cookie, offset, length);
  if (SendAll(fd_, request, sizeof(request), timeout_ms_) != 0) {
    // Bytes of this request may have gone out: the connection is no longer usable.
    pending_.erase(cookie);
    dead_.store(true, std::memory_order_release);
    shutdown(fd_, SHUT_RDWR);  // the receiver wakes and hands the others over
    return false;
  }
  return true;
}

void NbdRemoteReader::Receive() {
  std::vector<uint8_t> buffer;
  uint64_t quiet_since = NowMs();
  while (!stopping_.load(std::memory_order_acquire) && !dead_.load(std::memory_order_acquire)) {
    pollfd p{fd_, POLLIN, 0};
    int ready = poll(&p, 1, kPollSliceMs);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (pending_.empty()) {
        quiet_since = NowMs();
      } else if (NowMs() - quiet_since > timeout_ms_) {
        break;  // the server stopped answering
      }
      continue;
    }
    if (!ReceiveOne(&buffer)) break;
    quiet_since = NowMs();
  }
  Fail();
}

bool NbdRemoteReader::ReceiveOne(std::vector<uint8_t>* buffer) {
  uint8_t header[16];
  if (ReceiveAll(fd_, header, sizeof(header), timeout_ms_, stopping_) != 0) return false;
  uint32_t magic, error;
  uint64_t cookie;
  std::memcpy(&magic, header, 4);
  std::memcpy(&error, header + 4, 4);
  std::memcpy(&cookie, header + 8, 8);
  if (be32toh(magic) != kSimpleReplyMagic) return false;
  Pending read;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pending_.find(be64toh(cookie));
    if (it == pending_.end()) return false;  // a reply to nothing we asked: the stream cannot be trusted
    read = it->second;
    if (error != 0) {
      pending_.erase(it);
    }
  }
  if (error != 0) {
    // A simple reply to a failed read carries no data: the stream stays in step.
    fallback_(read.channel, read.unique, read.offset, read.length);
    return true;
  }
  if (buffer->size() < read.length) buffer->resize(read.length);
  if (ReceiveAll(fd_, buffer->data(), read.length, timeout_ms_, stopping_) != 0) return false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.erase(be64toh(cookie));
  }
  // Counted before the answer: whoever got the answer sees the read counted.
  served_.fetch_add(1, std::memory_order_relaxed);
  reply_(read.channel, read.unique, buffer->data(), read.length);
  return true;
}

void NbdRemoteReader::Fail() {
  std::unordered_map<uint64_t, Pending> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    dead_.store(true, std::memory_order_release);
    waiting.swap(pending_);
  }
  for (const auto& [cookie, read] : waiting) fallback_(read.channel, read.unique, read.offset, read.length);
}

void NbdRemoteReader::Stop() {
  std::call_once(stop_once_, [this] {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!dead_.load(std::memory_order_acquire)) {
        uint8_t request[28];
        PutRequest(request, kCmdDisconnect, 0, 0, 0);
        SendAll(fd_, request, sizeof(request), 1000);
      }
    }
    stopping_.store(true, std::memory_order_release);
    shutdown(fd_, SHUT_RDWR);
    if (receiver_.joinable()) receiver_.join();
    close(fd_);
    fd_ = -1;
  });
}

}  // namespace r3map
