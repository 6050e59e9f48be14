/* The official BLAKE3 C implementation, compiled from Debian's copy (librust-blake3-dev: the
 * blake3 crate's c/ folder, found by scripts/blake3-dir.sh). Included rather than listed in
 * binding.gyp because gyp's make generator cannot build sources outside the package. Nothing
 * here is ours but these lines. */
#include "blake3.c"
#include "blake3_dispatch.c"
#include "blake3_portable.c"
#if defined(__aarch64__)
#include "blake3_neon.c"
#endif
