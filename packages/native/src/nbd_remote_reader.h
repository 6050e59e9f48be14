// Reads for a direct FUSE mount, straight from the NBD server: the request
// threads send NBD_CMD_READ on a connection of its own (negotiated in
// JavaScript for simple replies, then handed over), and a receiver thread
// writes each reply's data to /dev/fuse as the FUSE reply. Neither JavaScript
// nor the engine's thread is on the way: a direct miss costs the round trip
// and two thread wake-ups, not the four hops through the event loop.
//
// Any failure of the connection (closed, reset, a malformed or unknown reply)
// hands every read still waiting to the fallback — JavaScript, which has its
// own connection, retries and timeouts — and the reader takes no more reads.
// No answer within the timeout does the same, unless the owner gave an
// `expired` handler: then the waiting reads fail there (a FUSE read gets
// EIO), since the fallback would ask the same silent server and wait a second
// timeout. An NBD error for one read hands just that read over, so its errno
// is decided where all errors are.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace r3map {

class NbdRemoteReader {
 public:
  using ReplyFn = std::function<void(uint32_t channel, uint64_t unique, const uint8_t* data, uint32_t length)>;
  using FallbackFn = std::function<void(uint32_t channel, uint64_t unique, uint64_t offset, uint32_t length)>;
  using ExpiredFn = std::function<void(uint32_t channel, uint64_t unique)>;

  // Takes `fd` over (a connected socket in the transmission phase); reads
  // must be multiples of `min_block` in offset and length and at most
  // `max_block` long, or they are not taken.
  NbdRemoteReader(int fd, uint32_t timeout_ms, uint32_t min_block, uint32_t max_block, ReplyFn reply,
                  FallbackFn fallback, ExpiredFn expired = nullptr);
  ~NbdRemoteReader();
  NbdRemoteReader(const NbdRemoteReader&) = delete;
  NbdRemoteReader& operator=(const NbdRemoteReader&) = delete;

  // From a request thread: sends the read. False when it cannot be taken (the
  // caller forwards it as before); once true, exactly one of the reply and
  // the fallback follows.
  bool Submit(uint32_t channel, uint64_t unique, uint64_t offset, uint32_t length);

  // Ends the connection (NBD_CMD_DISC first) and the receiver; reads still
  // waiting go to the fallback. Idempotent.
  void Stop();

  uint64_t served() const { return served_.load(std::memory_order_relaxed); }

  // The server went silent a moment ago (the reader gave up on it, at most a
  // second before): a read that would have gone to it should fail at once,
  // not wait a second timeout elsewhere — the kernel asks again for a page
  // whose readahead failed.
  bool RecentlySilent() const;

 private:
  struct Pending {
    uint32_t channel;
    uint64_t unique;
    uint64_t offset;
    uint32_t length;
  };

  void Receive();
  bool ReceiveOne(std::vector<uint8_t>* buffer);
  // Marks the connection dead and hands every waiting read to the fallback
  // (to `expired_`, when the server went silent and there is one).
  void Fail(bool silent);

  int fd_;
  const uint32_t timeout_ms_;
  const uint32_t min_block_;
  const uint32_t max_block_;
  const ReplyFn reply_;
  const FallbackFn fallback_;
  const ExpiredFn expired_;
  std::mutex mutex_;  // pending_, next_cookie_, and the socket's send side
  std::unordered_map<uint64_t, Pending> pending_;
  uint64_t next_cookie_ = 1;
  std::atomic<bool> dead_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> served_{0};
  std::atomic<uint64_t> silent_until_ms_{0};
  std::once_flag stop_once_;
  std::thread receiver_;
};

}  // namespace r3map
