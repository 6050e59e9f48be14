/* BLAKE3's sse41 kernel for x86-64 from Debian's copy of the official sources (see blake3_c.c);
 * blake3_dispatch.c picks a kernel at run time by CPUID. One file per kernel: each defines the
 * same local constants. */
#if defined(__x86_64__)
#include "blake3_sse41_x86-64_unix.S"
#endif
