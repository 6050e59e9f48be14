#include "fuse_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fuse_protocol.h"
#include "shared_bitmap.h"

namespace r3map::fuse {

bool LocalCache::ChunkPresent(uint64_t chunk) const { return bits::Test(bitmap, bitmapWords, chunk); }

bool LocalCache::ClaimBit(uint64_t chunk) { return bits::TestAndSet(inFlight, inFlightWords, chunk); }

void LocalCache::ReleaseBit(uint64_t chunk) { bits::Clear(inFlight, inFlightWords, chunk); }

bool LocalCache::Present(uint64_t offset, uint64_t length) const {
  if (bitmap == nullptr) return present;
  uint64_t first = offset / chunkSize;
  uint64_t last = (offset + length - 1) / chunkSize;
  for (uint64_t chunk = first; chunk <= last; chunk++) {
    if (!ChunkPresent(chunk)) return false;
  }
  return true;
}

bool LocalCache::StoreLocal(uint64_t offset, uint32_t length, const uint8_t* data) {
  if (dirty == nullptr || !HasData() || length == 0 || !Present(offset, length)) return false;
  uint64_t last = (offset + length - 1) / chunkSize;
  if ((last >> 5) >= dirtyWords) return false;
  if (!WriteBytes(offset, length, data)) return false;
  MarkWritten(offset / chunkSize, last);
  return true;
}

bool LocalCache::StoreWhole(uint64_t offset, uint32_t length, const uint8_t* data, uint64_t fileSize,
                            const std::function<void(uint64_t, uint32_t)>& becameLocal) {
  if (dirty == nullptr || inFlight == nullptr || bitmap == nullptr || !HasData() || length == 0) return false;
  const uint64_t end = offset + length;
  if (offset % chunkSize != 0 || (end % chunkSize != 0 && end != fileSize)) return false;
  const uint64_t first = offset / chunkSize, last = (end - 1) / chunkSize;
  if ((last >> 5) >= dirtyWords || (last >> 5) >= inFlightWords || (last >> 5) >= bitmapWords) return false;
  std::vector<uint64_t> claimed;
  for (uint64_t chunk = first; chunk <= last; chunk++) {
    if (ChunkPresent(chunk)) continue;
    if (!ClaimBit(chunk)) {
      for (uint64_t taken : claimed) ReleaseBit(taken);
      return false;  // someone is bringing it: JavaScript orders the write after that
    }
    // Present meanwhile (its fetch ended just before our claim): an ordinary write.
    if (ChunkPresent(chunk)) ReleaseBit(chunk);
    else claimed.push_back(chunk);
  }
  if (!WriteBytes(offset, length, data)) {
    for (uint64_t taken : claimed) ReleaseBit(taken);
    return false;
  }
  MarkWritten(first, last);
  for (uint64_t chunk : claimed) {
    // Present before the bit is given back: whoever takes it next sees the chunk there.
    bits::Set(bitmap, bitmapWords, chunk);
    ReleaseBit(chunk);
  }
  // One notice per run of chunks that became local.
  for (size_t i = 0; i < claimed.size();) {
    size_t j = i + 1;
    while (j < claimed.size() && claimed[j] == claimed[j - 1] + 1) j++;
    const uint64_t from = claimed[i] * chunkSize;
    const uint64_t to = std::min<uint64_t>(fileSize, (claimed[j - 1] + 1) * chunkSize);
    becameLocal(from, static_cast<uint32_t>(to - from));
    i = j;
  }
  return true;
}

bool LocalCache::WriteBytes(uint64_t offset, uint32_t length, const uint8_t* data) {
  if (!segments.empty()) {
    uint64_t done = 0;
    while (done < length) {
      uint64_t position = offset + done;
      uint64_t index = position / segmentSize;
      uint64_t start = position % segmentSize;
      if (index >= segments.size()) return false;
      auto [base, bytes] = segments[index];
      uint64_t take = std::min<uint64_t>(length - done, bytes - start);
      std::memcpy(base + start, data + done, take);
      done += take;
    }
    return true;
  }
  uint32_t done = 0;
  while (done < length) {
    ssize_t n = pwrite(fd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // JavaScript retries it and reports the error
    done += static_cast<uint32_t>(n);
  }
  return true;
}

// Whoever pushes changes takes these bits (after the bytes).
void LocalCache::MarkWritten(uint64_t first, uint64_t last) {
  for (uint64_t chunk = first; chunk <= last; chunk++) bits::Set(dirty, dirtyWords, chunk);
}

void LocalCache::Reply(int out, uint64_t unique, uint64_t offset, uint32_t length, uint8_t* scratch) const {
  if (!segments.empty()) {
    iovec iov[8];
    int count = 1;
    uint64_t position = offset;
    uint64_t end = offset + length;
    while (position < end && count < 8) {
      uint64_t index = position / segmentSize;
      uint64_t start = position % segmentSize;
      if (index >= segments.size()) return Send(out, unique, EIO, nullptr, 0);
      auto [base, bytes] = segments[index];
      uint64_t take = std::min<uint64_t>(end - position, bytes - start);
      iov[count++] = {base + start, static_cast<size_t>(take)};
      position += take;
    }
    return SendV(out, unique, 0, iov, count);
  }
  size_t done = 0;
  while (done < length) {
    ssize_t n = pread(fd, scratch + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Send(out, unique, errno, nullptr, 0);
    if (n == 0) {  // a shorter cache file reads as zeros
      std::memset(scratch + done, 0, length - done);
      break;
    }
    done += static_cast<size_t>(n);
  }
  Send(out, unique, 0, scratch, length);
}

void AdviseHugePages(uint8_t* base, size_t length) {
  constexpr uintptr_t kHuge = 2u << 20;
  uintptr_t start = (reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(base) + length) & ~(kHuge - 1);
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
}

}  // namespace r3map::fuse
