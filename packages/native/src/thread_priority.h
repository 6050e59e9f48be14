// Scheduling priority of the calling native thread (Linux: nice values are
// per thread). Faults and FUSE requests are answered by native threads that
// mostly sleep; when one wakes, a reader is blocked on it, and background
// work (populating a cache, the pull, V8's compiler and GC helpers) must not
// keep it off a core. Nothing is lowered: background threads hold kernel
// locks (the memory-map lock) that readers' faults need, and preempted while
// holding one they would stall everybody. Raising needs CAP_SYS_NICE (or
// RLIMIT_NICE): without it the thread simply keeps its priority. Not for the
// engine's JavaScript thread: it also receives the pull, and raised it took
// the cores from the remote's server (measured: demand misses during a pull
// got slower).
#pragma once
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace r3map {

// A thread a blocked reader waits on: a fault or FUSE request handler.
constexpr int kResponsiveNice = -10;

inline bool SetThisThreadNice(int nice) {
  return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) == 0;
}

}  // namespace r3map
