// Each facility (uffd, fuse, loop, …) lives in its own .cc file and registers
// its exports here with a static R3MAP_MODULE(name, init) line, so adding a
// facility never touches a shared file. addon.cc calls every registered init.
#pragma once
#include <napi.h>
#include <vector>

namespace r3map {

using ModuleInit = void (*)(Napi::Env env, Napi::Object exports);

inline std::vector<ModuleInit>& Modules() {
  static std::vector<ModuleInit> modules;
  return modules;
}

struct ModuleRegistrar {
  explicit ModuleRegistrar(ModuleInit init) { Modules().push_back(init); }
};

}  // namespace r3map

#define R3MAP_MODULE(name, init) static ::r3map::ModuleRegistrar r3map_module_##name(init)
