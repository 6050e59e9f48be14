// Start of a typed array's bytes, also for SharedArrayBuffer-backed arrays
// (TypedArray::ArrayBuffer() does not give those).
#pragma once
#include <napi.h>

#include <cstdint>

namespace r3map {

inline uint8_t* TypedArrayBytes(Napi::TypedArray array) {
  napi_typedarray_type type;
  size_t count = 0, offset = 0;
  void* data = nullptr;
  napi_value buffer;
  if (napi_get_typedarray_info(array.Env(), array, &type, &count, &data, &buffer, &offset) != napi_ok) return nullptr;
  return static_cast<uint8_t*>(data);
}

}  // namespace r3map
