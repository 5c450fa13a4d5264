// The float32 register tiles of the fused conv block (conv_block_driver.h's Math), W floats per
// vector and CV vectors of output channels: kMaxCols conv columns x CV vectors (CV = 2: 12 x 32
// with AVX-512, 24 of its 32 registers; 6 x 16 with AVX2. CV = 1, for channel counts that are an
// odd multiple of the vector: 24 x 16 with AVX-512, 12 x 8 with AVX2). Per reduction step, CV
// weight vector loads and kMaxCols broadcasts of x feed CV kMaxCols FMAs (compiled with
// -ffp-contract=fast). It lives in an anonymous namespace on purpose: every kernel source
// compiles its own copy for its instruction set (one shared instantiation would mix ISAs at
// link time).
#pragma once

#include <cstdint>

#include "conv_block_cpu.h"
#include "conv_block_driver.h"

namespace dlr {
namespace {

template <int W, int CV = 2>
struct Float32Tile {
  using In = float;
  using Weight = float;
  using Out = float;
  static constexpr int kWidth = W;
  static constexpr int kCoutVectors = CV;
  static constexpr int kMaxCols = (kWidth == 16 ? 24 : 12) / CV;  // 32 zmm registers vs 16 ymm
  using V = conv_block_detail::vec<kWidth>;
  typedef float unaligned __attribute__((vector_size(kWidth * sizeof(float)), aligned(4)));

  static int64_t weight_run(const ConvBlockGeometry& geo) { return geo.run(); }

  template <int R>
  static inline void tile(const float* x, const ConvBlockGeometry& geo, const float* w,
                          V (&acc)[R][kCoutVectors]) {
    const int64_t run = geo.run(), step = geo.col_step();
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kCoutVectors; ++j) acc[r][j] = V{};
    for (int64_t kr = 0; kr < geo.kernel_rows; ++kr) {
      const float* xr = x + kr * geo.in_row_stride;
      const float* wr = w + kr * run * kWidth * kCoutVectors;
      for (int64_t k = 0; k < run; ++k) {
        V wv[kCoutVectors];
        for (int j = 0; j < kCoutVectors; ++j)
          wv[j] = *reinterpret_cast<const V*>(wr + (k * kCoutVectors + j) * kWidth);
#pragma GCC unroll 24
        for (int r = 0; r < R; ++r) {
          const V xb = xr[r * step + k] - V{};  // x - 0 == x: a broadcast load (0 + x is not)
          for (int j = 0; j < kCoutVectors; ++j) acc[r][j] += xb * wv[j];
        }
      }
    }
  }

  static inline V load(const float* p) { return *reinterpret_cast<const unaligned*>(p); }
  static inline void store(float* p, V v) { *reinterpret_cast<unaligned*>(p) = v; }
  static inline void store_input(float* p, V v) { *reinterpret_cast<unaligned*>(p) = v; }
};

}  // namespace
}  // namespace dlr
