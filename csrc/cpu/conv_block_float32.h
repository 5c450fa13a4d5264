// The float32 register tile of the fused conv block (conv_block_driver.h's Math), W floats per
// vector: kMaxCols conv columns x 2 vectors of output channels (12 x 32 with AVX-512: 24
// accumulators of its 32 registers; 6 x 16 with AVX2). Per reduction step, 2 weight vector
// loads and kMaxCols broadcasts of x feed 2 kMaxCols FMAs (compiled with -ffp-contract=fast).
// It lives in an anonymous namespace on purpose: every kernel source compiles its own copy
// for its instruction set (one shared instantiation would mix ISAs at link time).
#pragma once

#include <cstdint>

#include "conv_block_cpu.h"
#include "conv_block_driver.h"

namespace dlr {
namespace {

template <int W>
struct Float32Tile {
  using In = float;
  using Weight = float;
  using Out = float;
  static constexpr int kWidth = W;
  static constexpr int kCoutVectors = 2;
  static constexpr int kMaxCols = kWidth == 16 ? 12 : 6;  // 32 zmm registers vs 16 ymm / xmm
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
#pragma GCC unroll 12
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
