// Bits of a ChunkBitmap's shared memory — presence, in-flight, written — as
// native code reads and changes them: little-endian 32-bit words (the
// Int32Array JavaScript uses), one bit per chunk, changed with atomics so
// that JavaScript's Atomics and every native thread agree on each bit. An
// index past the words reads as clear and is never changed.
#pragma once
#include <endian.h>

#include <cstddef>
#include <cstdint>

namespace r3map::bits {

inline uint32_t Mask(uint64_t index) { return htole32(uint32_t{1} << (index & 31)); }

inline bool Test(const uint32_t* words, size_t count, uint64_t index) {
  if (words == nullptr || (index >> 5) >= count) return false;
  return (__atomic_load_n(&words[index >> 5], __ATOMIC_SEQ_CST) & Mask(index)) != 0;
}

inline void Set(uint32_t* words, size_t count, uint64_t index) {
  if (words != nullptr && (index >> 5) < count) __atomic_fetch_or(&words[index >> 5], Mask(index), __ATOMIC_SEQ_CST);
}

// True when this call set the bit (it was clear).
inline bool TestAndSet(uint32_t* words, size_t count, uint64_t index) {
  if (words == nullptr || (index >> 5) >= count) return false;
  return (__atomic_fetch_or(&words[index >> 5], Mask(index), __ATOMIC_SEQ_CST) & Mask(index)) == 0;
}

inline void Clear(uint32_t* words, size_t count, uint64_t index) {
  if (words != nullptr && (index >> 5) < count) __atomic_fetch_and(&words[index >> 5], ~Mask(index), __ATOMIC_SEQ_CST);
}

}  // namespace r3map::bits
