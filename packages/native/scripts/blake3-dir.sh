#!/bin/sh
# Prints the directory of the official BLAKE3 C implementation that Debian's
# librust-blake3-dev ships (the Rust crate's c/ folder: portable C, SSE2/SSE4.1/
# AVX2/AVX-512 assembly, runtime dispatch). binding.gyp compiles it into the addon.
dir=$(ls -1d /usr/share/cargo/registry/blake3-*/c 2>/dev/null | sort -V | tail -1)
if [ -z "$dir" ] || [ ! -f "$dir/blake3.h" ]; then
  echo "BLAKE3 sources not found: install the Debian package librust-blake3-dev (listed in packages/native/system-deps.txt)" >&2
  exit 1
fi
echo "$dir"
