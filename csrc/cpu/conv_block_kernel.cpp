// Fused inference conv block in float32 (conv_block_cpu.h): conv + bias + activation + max-pool
// without writing the conv output. Compiled once per instruction set like dlr_cpu_kernel.cpp
// (DLR_ISA, DLR_VEC_FLOATS); the register tile is conv_block_float32.h's.
#include "conv_block_cpu.h"
#include "conv_block_driver.h"
#include "conv_block_float32.h"
#include "conv_block_winograd.h"

namespace dlr {
namespace DLR_ISA {
namespace {

using Float32Math = Float32Tile<DLR_VEC_FLOATS>;

}  // namespace

int64_t conv_block_channel_multiple() { return Float32Math::kWidth * Float32Math::kCoutVectors; }

bool conv_block_supports(const ConvBlockGeometry& geo, ConvAlgorithm algorithm) {
  return algorithm == ConvAlgorithm::kWinograd ? conv_block_detail::supports_winograd<Float32Math>(geo)
                                               : conv_block_detail::supports<Float32Math>(geo);
}

void conv_block(const float* x, const float* w, const float* bias, float* out,
                const ConvBlockGeometry& geo, ConvAlgorithm algorithm, int threads) {
  if (algorithm == ConvAlgorithm::kWinograd)
    conv_block_detail::run_winograd<Float32Math>(x, w, bias, out, geo, threads);
  else
    conv_block_detail::run<Float32Math>(x, w, bias, out, geo, threads);
}

}  // namespace DLR_ISA
}  // namespace dlr
