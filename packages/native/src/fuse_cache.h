// The local cache a FUSE request thread serves from and stores into without
// JavaScript: presence bitmap → memory segments or an fd. Writes to present
// chunks are stored here and marked in the shared `written` bitmap; writes
// covering whole missing chunks are stored once their in-flight claims are
// taken (the claim protocol shared with the engine and the fault handler, see
// shared_bitmap.h). The bitmaps and the memory belong to JavaScript; the
// session keeps them alive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace r3map::fuse {

struct LocalCache {
  uint32_t* bitmap = nullptr;  // presence, one bit per chunk
  size_t bitmapWords = 0;
  uint64_t chunkSize = 0;
  std::vector<std::pair<uint8_t*, size_t>> segments;  // memory cache
  uint64_t segmentSize = 0;
  int fd = -1;           // or an fd cache
  bool present = false;  // no bitmap: everything is local
  // Written chunks, one bit each (atomic OR after the bytes are stored): set,
  // WRITEs to present chunks are stored here natively and JavaScript finds
  // them in this bitmap instead of being called.
  uint32_t* dirty = nullptr;
  size_t dirtyWords = 0;
  // Chunks being fetched or first written right now, one bit each, taken
  // (test-and-set) by whoever writes them into the cache: WRITEs of whole
  // missing chunks are stored natively only after taking their bits.
  uint32_t* inFlight = nullptr;
  size_t inFlightWords = 0;

  bool HasData() const { return !segments.empty() || fd >= 0; }
  // Every chunk of [offset, offset + length) is present.
  bool Present(uint64_t offset, uint64_t length) const;
  // Stores a WRITE of present chunks and marks them written; false when it
  // cannot (then JavaScript gets the write).
  bool StoreLocal(uint64_t offset, uint32_t length, const uint8_t* data);
  // Stores a WRITE covering whole chunks, some not present (the last may end
  // at `fileSize`): takes the missing chunks' in-flight bits first (all, or
  // it leaves the write to JavaScript), stores the bytes, marks them present,
  // gives the bits back, and reports each run of chunks that became present.
  bool StoreWhole(uint64_t offset, uint32_t length, const uint8_t* data, uint64_t fileSize,
                  const std::function<void(uint64_t from, uint32_t length)>& becameLocal);
  // Replies to a READ of [offset, offset + length) from the cache.
  // `scratch` (kMaxWrite bytes) is needed for an fd cache.
  void Reply(int fd, uint64_t unique, uint64_t offset, uint32_t length, uint8_t* scratch) const;

 private:
  bool ChunkPresent(uint64_t chunk) const;
  bool ClaimBit(uint64_t chunk);
  void ReleaseBit(uint64_t chunk);
  bool WriteBytes(uint64_t offset, uint32_t length, const uint8_t* data);
  void MarkWritten(uint64_t first, uint64_t last);
};

// Asks for transparent huge pages on the 2 MiB-aligned interior of a memory
// cache segment: replies copy from this memory, and with 4 KiB pages the
// kernel's page walks cost as much as the copy itself on this kind of VM.
void AdviseHugePages(uint8_t* base, size_t length);

}  // namespace r3map::fuse
