// Entry points of the fused DLR CPU kernels, one set per instruction set.
#pragma once

#include <cstdint>

#include "dlr_tile.h"

namespace dlr {

#define DLR_DECLARE_CPU_KERNELS(isa)                                                         \
  namespace isa {                                                                            \
  void forward(const float* x, const float* w, const float* b, const int64_t* dilations,     \
               float* out, const Geometry& geo, int threads);                                \
  void backward(const float* grad_out, const float* x, const float* w, const float* b,       \
                const int64_t* dilations, float* grad_x_parts, float* grad_w_parts,          \
                float* grad_b_parts, const Geometry& geo, int threads);                      \
  /* out[n, t] = |x[n, t] / max_t |x[n, t]|| (clips of silence: |x|), rows in parallel */    \
  void peak_abs(const float* x, int64_t batch, int64_t samples, float* out, int threads);    \
  }

DLR_DECLARE_CPU_KERNELS(generic)
#if defined(DLR_HAVE_X86_VARIANTS)
DLR_DECLARE_CPU_KERNELS(avx2)
DLR_DECLARE_CPU_KERNELS(avx512)
#endif

#undef DLR_DECLARE_CPU_KERNELS

#if defined(DLR_HAVE_X86_VARIANTS)
// The forward in bfloat16 precision (dlr_cpu_bf16_kernel.cpp): CPUs with AVX512_BF16 only.
namespace avx512bf16 {
// Even taps, channels a multiple of 8, pool a multiple of 32.
bool forward_bf16_supports(const Geometry& geo);
void forward_bf16(const float* x, const float* w, const float* b, const int64_t* dilations,
                  float* out, const Geometry& geo, int threads);
}  // namespace avx512bf16
#endif

}  // namespace dlr
