// Fused inference conv block in bfloat16 (conv_block_cpu.h) on CPUs with AVX512_BF16: x, the
// weights and the output are bfloat16, sums float32. Each VDPBF16PS multiplies a pair of
// consecutive reduction values (two input channels, or two kernel columns when there is one
// input channel) per float32 lane, so a tile does twice the multiply-adds per instruction of
// the float32 kernel. The register tile is 12 conv columns x 32 output channels.
#include <immintrin.h>

#include <cstring>

#include "conv_block_cpu.h"
#include "conv_block_driver.h"
#include "conv_block_float32.h"
#include "conv_block_winograd.h"

namespace dlr {
namespace avx512bf16 {
namespace {

struct BFloat16Math {
  using In = uint16_t;
  using Weight = uint32_t;
  using Out = uint16_t;
  static constexpr int kWidth = 16;
  static constexpr int kCoutVectors = 2;
  static constexpr int kMaxCols = 12;
  using V = conv_block_detail::vec<kWidth>;

  static int64_t weight_run(const ConvBlockGeometry& geo) { return geo.run() / 2; }

  template <int R>
  static inline void tile(const uint16_t* x, const ConvBlockGeometry& geo, const uint32_t* w,
                          V (&acc)[R][kCoutVectors]) {
    const int64_t pairs = geo.run() / 2, step = geo.col_step();
    __m512 sums[R][kCoutVectors];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kCoutVectors; ++j) sums[r][j] = _mm512_setzero_ps();
    for (int64_t kr = 0; kr < geo.kernel_rows; ++kr) {
      const uint16_t* xr = x + kr * geo.in_row_stride;
      const uint32_t* wr = w + kr * pairs * kWidth * kCoutVectors;
      for (int64_t p = 0; p < pairs; ++p) {
        __m512bh wv[kCoutVectors];
        for (int j = 0; j < kCoutVectors; ++j)
          wv[j] = (__m512bh)_mm512_load_si512(wr + (p * kCoutVectors + j) * kWidth);
#pragma GCC unroll 12
        for (int r = 0; r < R; ++r) {
          uint32_t pair;
          std::memcpy(&pair, xr + r * step + 2 * p, sizeof(pair));
          const __m512bh xb = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
          for (int j = 0; j < kCoutVectors; ++j) sums[r][j] = _mm512_dpbf16_ps(sums[r][j], xb, wv[j]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kCoutVectors; ++j) acc[r][j] = (V)sums[r][j];
  }

  // bfloat16 -> float32 (exact: the 16 bits become the top half)
  static inline V load(const uint16_t* p) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return (V)_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16);
  }

  // float32 -> bfloat16, round to nearest even (VCVTNEPS2BF16; NaN stays NaN)
  static inline void store(uint16_t* p, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh((__m512)v));
  }
  static inline void store_input(uint16_t* p, V v) { store(p, v); }
};

// float32 input and weights on the float32 tile, bfloat16 output: a float32 block whose next
// block runs in bfloat16 writes that block's input directly.
struct Float32ToBFloat16Math : Float32Tile<16> {
  using Out = uint16_t;
  static inline void store(uint16_t* p, V v) { BFloat16Math::store(p, v); }
};

}  // namespace

bool conv_block_bf16_supports(const ConvBlockGeometry& geo, ConvAlgorithm algorithm) {
  return (algorithm == ConvAlgorithm::kWinograd || geo.run() % 2 == 0) &&
         conv_block_detail::supports_algorithm<BFloat16Math>(geo, algorithm);
}

void conv_block_bf16(const uint16_t* x, const uint32_t* w_pairs, const float* bias, uint16_t* out,
                     const ConvBlockGeometry& geo, ConvAlgorithm algorithm, int threads) {
  conv_block_detail::run_algorithm<BFloat16Math>(x, w_pairs, bias, out, geo, algorithm, threads);
}

bool conv_block_to_bf16_supports(const ConvBlockGeometry& geo, ConvAlgorithm algorithm) {
  return conv_block_detail::supports_algorithm<Float32ToBFloat16Math>(geo, algorithm);
}

void conv_block_to_bf16(const float* x, const float* w, const float* bias, uint16_t* out,
                        const ConvBlockGeometry& geo, ConvAlgorithm algorithm, int threads) {
  conv_block_detail::run_algorithm<Float32ToBFloat16Math>(x, w, bias, out, geo, algorithm, threads);
}

}  // namespace avx512bf16
}  // namespace dlr
