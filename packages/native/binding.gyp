{
  "variables": {
    "blake3_dir": "<!(sh scripts/blake3-dir.sh)"
  },
  "targets": [
    {
      "target_name": "blake3",
      "type": "static_library",
      "sources": ["src/blake3/blake3_c.c"],
      "include_dirs": ["<(blake3_dir)"],
      "cflags": ["-O3", "-fPIC"],
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["src/blake3/blake3_sse2.S", "src/blake3/blake3_sse41.S", "src/blake3/blake3_avx2.S", "src/blake3/blake3_avx512.S"]
        }],
        ["target_arch=='arm64'", {
          "defines": ["BLAKE3_USE_NEON=1"]
        }],
        ["target_arch!='x64' and target_arch!='arm64'", {
          "defines": ["BLAKE3_NO_SSE2", "BLAKE3_NO_SSE41", "BLAKE3_NO_AVX2", "BLAKE3_NO_AVX512"]
        }]
      ],
      "direct_dependent_settings": {
        "include_dirs": ["<(blake3_dir)"]
      }
    },
    {
      "target_name": "r3map_native",
      "dependencies": ["blake3"],
      "sources": ["<!@(ls -1 src/*.cc)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "src"],
      "defines": ["NAPI_VERSION=9", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++20", "-fno-exceptions", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "libraries": ["-lpthread", "-lxxhash"]
    }
  ]
}
