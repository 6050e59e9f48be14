#include "module.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (auto init : r3map::Modules()) init(env, exports);
  return exports;
}

NODE_API_MODULE(r3map_native, Init)
