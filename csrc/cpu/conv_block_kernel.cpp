// Fused inference conv block in float32 (conv_block_cpu.h): conv + bias + activation + max-pool
// without writing the conv output. Compiled once per instruction set like dlr_cpu_kernel.cpp
// (DLR_ISA, DLR_VEC_FLOATS). The register tile is kMaxCols conv columns x 2 vectors of output
// channels (12 x 32 with AVX-512: 24 accumulators of its 32 registers; 6 x 16 with AVX2): per
// reduction step, 2 weight vector loads and kMaxCols broadcasts of x feed 2 kMaxCols FMAs.
#include "conv_block_cpu.h"
#include "conv_block_driver.h"

namespace dlr {
namespace DLR_ISA {
namespace {

struct Float32Math {
  using In = float;
  using Weight = float;
  using Out = float;
  static constexpr int kWidth = DLR_VEC_FLOATS;
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
          const V xb = V{} + xr[r * step + k];
          for (int j = 0; j < kCoutVectors; ++j) acc[r][j] += xb * wv[j];
        }
      }
    }
  }

  static inline void store(float* p, V v) { *reinterpret_cast<unaligned*>(p) = v; }
};

}  // namespace

int64_t conv_block_channel_multiple() { return Float32Math::kWidth * Float32Math::kCoutVectors; }

bool conv_block_supports(const ConvBlockGeometry& geo) {
  return conv_block_detail::supports<Float32Math>(geo);
}

void conv_block(const float* x, const float* w, const float* bias, float* out,
                const ConvBlockGeometry& geo, int threads) {
  conv_block_detail::run<Float32Math>(x, w, bias, out, geo, threads);
}

}  // namespace DLR_ISA
}  // namespace dlr
