// Fused inference conv block in float32 (conv_block_cpu.h): conv + bias + activation + max-pool
// without writing the conv output. Compiled once per instruction set like dlr_cpu_kernel.cpp
// (DLR_ISA, DLR_VEC_FLOATS); the register tile is conv_block_float32.h's, the FFT algorithm
// conv_block_fft.h's.
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "conv_block_cpu.h"
#include "conv_block_driver.h"
#include "conv_block_float32.h"
#include "conv_block_winograd.h"

namespace dlr {
namespace DLR_ISA {
namespace {

#include "lane_fft.h"
#include "conv_block_fft.h"

using Float32Math = Float32Tile<DLR_VEC_FLOATS>;
// output channels an odd multiple of the vector: one channel vector, twice the columns
using Float32NarrowMath = Float32Tile<DLR_VEC_FLOATS, 1>;

bool narrow(const ConvBlockGeometry& geo) {
  return geo.out_channels % (Float32Math::kWidth * Float32Math::kCoutVectors) != 0;
}

}  // namespace

int64_t conv_block_channel_multiple() { return Float32Math::kWidth * Float32Math::kCoutVectors; }

int64_t conv_block_fft_size(int64_t in_cols) { return row_fft_points(in_cols); }

bool conv_block_supports(const ConvBlockGeometry& geo, ConvAlgorithm algorithm) {
  using conv_block_detail::supports_algorithm;
  if (algorithm == ConvAlgorithm::kFft) return supports_fft(geo);
  return narrow(geo) ? supports_algorithm<Float32NarrowMath>(geo, algorithm)
                     : supports_algorithm<Float32Math>(geo, algorithm);
}

void conv_block(const float* x, const float* w, const float* bias, float* out,
                const ConvBlockGeometry& geo, ConvAlgorithm algorithm, int threads) {
  using conv_block_detail::run_algorithm;
  if (algorithm == ConvAlgorithm::kFft)
    run_fft(x, w, bias, out, geo, threads);
  else if (narrow(geo))
    run_algorithm<Float32NarrowMath>(x, w, bias, out, geo, algorithm, threads);
  else
    run_algorithm<Float32Math>(x, w, bias, out, geo, algorithm, threads);
}

}  // namespace DLR_ISA
}  // namespace dlr
