// Entry points of the fused inference conv block (conv_block_kernel.cpp, float32, one set per
// instruction set; conv_block_bf16_kernel.cpp, bfloat16, AVX512_BF16 only).
//
// Three algorithms (ConvAlgorithm): kDirect, register tiles of conv columns x output channels
// (conv_block_driver.h); kWinograd, Winograd F(2x2, 3x3) for 3x3 kernels at stride 1 with even
// pools (conv_block_winograd.h): 16 multiplies per 2x2 outputs instead of 36, each 2x2 output
// tile max-pooled as it is made; kFft (float32 only), a 1 x K kernel on one input channel as
// real FFTs of whole rows (conv_block_fft.h). Their packed weights differ (see w below).
//
// One block: out = max_pool(act(conv2d(x, w, column stride) + bias)), evaluated as act(max_pool(conv) + bias)
// (exact for the non-decreasing activations here), so the full-size conv output is never
// written: each work item (clip, pooled output row) keeps the max of its pool_rows conv rows in
// a buffer of one pooled row (out_cols x out_channels floats) per thread.
//
// Layouts (channels innermost, "NHWC"):
//   x    (batch, in_rows, in_cols, in_channels), already padded: the conv is VALID on it;
//        rows in_row_stride apart, clips in_batch_stride apart, columns in_channels apart.
//   w    packed (out_channels / block, kernel_rows, kernel_cols * in_channels, block) float32,
//        block = conv_block_channel_multiple() of the ISA; for bfloat16 (out_channels / 32,
//        kernel_rows, kernel_cols * in_channels / 2, 32) pairs of bfloat16 in one 32-bit word
//        (the lower one first): the reduction of a kernel row runs over the contiguous
//        kernel_cols * in_channels values of x.
//        kWinograd: the transformed kernels U = G g G^T (4 x 4 per channel pair), packed
//        (out_channels / block, 16, in_channels, block) float32, or (out_channels / 32, 16,
//        in_channels / 2, 32) bfloat16 pairs of consecutive input channels.
//        kFft: (out_channels, M / 2 + 1) complex float pairs, conj(DFT_M(kernel row)) / M,
//        M = conv_block_fft_size(in_cols).
//   bias (out_channels) float32 (eval batch norm folded in by the caller).
//   out  (batch, out_rows, out_cols, out_channels) with the given row / column / clip strides
//        (it may be the interior of the next block's zero-padded input).
#pragma once

#include <cstdint>

namespace dlr {

enum class Activation : int { kIdentity = 0, kRelu = 1, kElu = 2 };
enum class ConvAlgorithm : int { kDirect = 0, kWinograd = 1, kFft = 2 };

struct ConvBlockGeometry {
  int64_t batch, in_rows, in_cols, in_channels;
  int64_t in_batch_stride, in_row_stride;
  int64_t kernel_rows, kernel_cols, out_channels;
  int64_t pool_rows, pool_cols;
  int64_t out_batch_stride, out_row_stride, out_col_stride;
  Activation activation;
  int64_t stride_cols;  // conv stride along columns (rows: 1)

  int64_t out_rows() const { return (in_rows - kernel_rows + 1) / pool_rows; }
  int64_t conv_cols() const { return (in_cols - kernel_cols) / stride_cols + 1; }
  int64_t out_cols() const { return conv_cols() / pool_cols; }
  int64_t run() const { return kernel_cols * in_channels; }
  // x values between two adjacent conv output columns
  int64_t col_step() const { return stride_cols * in_channels; }
};

// Shapes every kernel needs: a non-empty output and positive sizes.
inline bool conv_block_shape_ok(const ConvBlockGeometry& geo) {
  return geo.batch > 0 && geo.in_channels > 0 && geo.kernel_rows > 0 && geo.kernel_cols > 0 &&
         geo.pool_rows > 0 && geo.pool_cols > 0 && geo.out_channels > 0 && geo.stride_cols > 0 &&
         geo.in_cols >= geo.kernel_cols && geo.out_rows() > 0 && geo.out_cols() > 0;
}

#define DLR_DECLARE_CONV_BLOCK(isa)                                                          \
  namespace isa {                                                                            \
  /* the packed weights' channel block; out_channels must be a multiple of it */           \
  int64_t conv_block_channel_multiple();                                                     \
  /* points of the kFft row transform for rows of in_cols values */                        \
  int64_t conv_block_fft_size(int64_t in_cols);                                              \
  /* whether the algorithm covers geo (channels, pool, kernel, shapes) */                  \
  bool conv_block_supports(const ConvBlockGeometry& geo, ConvAlgorithm algorithm);           \
  void conv_block(const float* x, const float* w, const float* bias, float* out,             \
                  const ConvBlockGeometry& geo, ConvAlgorithm algorithm, int threads);       \
  }

DLR_DECLARE_CONV_BLOCK(generic)
#if defined(DLR_HAVE_X86_VARIANTS)
DLR_DECLARE_CONV_BLOCK(avx2)
DLR_DECLARE_CONV_BLOCK(avx512)
namespace avx512bf16 {
// x and out bfloat16 bits; needs run() even, out_channels a multiple of 32.
bool conv_block_bf16_supports(const ConvBlockGeometry& geo, ConvAlgorithm algorithm);
void conv_block_bf16(const uint16_t* x, const uint32_t* w_pairs, const float* bias, uint16_t* out,
                     const ConvBlockGeometry& geo, ConvAlgorithm algorithm, int threads);
// x float32 and w packed as the float32 kernel's with a channel block of 32, out bfloat16 bits
// (a float32 block feeding a bfloat16 one).
bool conv_block_to_bf16_supports(const ConvBlockGeometry& geo, ConvAlgorithm algorithm);
void conv_block_to_bf16(const float* x, const float* w, const float* bias, uint16_t* out,
                        const ConvBlockGeometry& geo, ConvAlgorithm algorithm, int threads);
}  // namespace avx512bf16
#endif

#undef DLR_DECLARE_CONV_BLOCK

}  // namespace dlr
