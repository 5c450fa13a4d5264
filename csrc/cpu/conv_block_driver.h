// The loops of the fused conv block shared by its float32 and bfloat16 kernels: work items,
// column tiles, in-register max-pooling, the epilogue. `Math` supplies the register tile:
//   Math::In, Math::Weight, Math::Out          element types of x, the packed weights and out
//   Math::kWidth                               float32 lanes of a vector
//   Math::kCoutVectors                         output-channel vectors of a tile
//   Math::kMaxCols                             most conv columns a tile holds in registers
//   Math::weight_run(geo)                      packed weight words per kernel row and channel
//   Math::tile<R>(x, geo, w, acc)              acc[R][kCoutVectors] = conv at R columns from x,
//                                              w the packed weights of one channel block
//   Math::store(Out* p, vec v)                 writes kWidth output channels
//   Math::load(const In* p), Math::store_input(In* p, vec v)
//                                              kWidth channels of the input type (Winograd)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "conv_block_cpu.h"

namespace dlr {
namespace conv_block_detail {

template <int W>
struct VecOf {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
};
template <int W>
using vec = typename VecOf<W>::type;

// max that keeps a NaN of either operand (as torch's max_pool2d does)
template <typename V>
inline V nan_max(V a, V b) {
  return (a > b) | (a != a) ? a : b;
}

// The block's activation; NaN stays NaN (as torch.relu).
template <typename V>
inline V activate(V v, Activation act, int width) {
  if (act == Activation::kRelu) return (v > 0) | (v != v) ? v : 0;
  if (act == Activation::kElu)
    for (int i = 0; i < width; ++i) v[i] = v[i] > 0.f ? v[i] : std::expm1(v[i]);
  return v;
}

// One tile: conv at columns col .. col + R of one conv row, max-pooled along columns into
// pooled[(col / pool_cols + p) * cout_vectors + cout_vector]. A tile holds whole pool windows
// (R a multiple of pool_cols), or lies inside one window (wider pools: 80 columns are tiles of
// 12 x 6 + 8); the first_row tile that starts a window assigns, the others take the max.
template <class Math, int R>
inline void tile_pool(const typename Math::In* x, const typename Math::Weight* w,
                      const ConvBlockGeometry& geo, int64_t col, int64_t cout_block,
                      bool first_row, vec<Math::kWidth>* pooled) {
  using V = vec<Math::kWidth>;
  constexpr int CV = Math::kCoutVectors;
  V acc[R][CV];
  Math::template tile<R>(x + col * geo.col_step(), geo, w, acc);
  const int64_t pc = geo.pool_cols, cout_vectors = geo.out_channels / Math::kWidth;
  const int64_t windows = R >= pc ? R / pc : 1, width = R >= pc ? pc : R;
  const bool assign = first_row && col % pc == 0;
  for (int64_t p = 0; p < windows; ++p) {
    V* dst = pooled + (col / pc + p) * cout_vectors + cout_block * CV;
    for (int j = 0; j < CV; ++j) {
      V m = acc[p * width][j];
      for (int64_t q = 1; q < width; ++q) m = nan_max(m, acc[p * width + q][j]);
      dst[j] = assign ? m : nan_max(dst[j], m);
    }
  }
}

template <class Math, int R>
inline bool try_tile(int64_t left, const typename Math::In* x, const typename Math::Weight* w,
                     const ConvBlockGeometry& geo, int64_t& col, int64_t cout_block,
                     bool first_row, vec<Math::kWidth>* pooled) {
  if constexpr (R > Math::kMaxCols) {
    return false;
  } else {
    const int64_t pc = geo.pool_cols;
    const bool fits = R % pc == 0 ? left >= R : R < pc && pc - col % pc >= R;
    if (!fits) return false;
    tile_pool<Math, R>(x, w, geo, col, cout_block, first_row, pooled);
    col += R;
    return true;
  }
}

// Whether the tiles cover geo: shapes and whole channel blocks (any pool width: see tile_pool).
template <class Math>
inline bool supports(const ConvBlockGeometry& geo) {
  return conv_block_shape_ok(geo) && geo.out_channels % (Math::kWidth * Math::kCoutVectors) == 0;
}

// The epilogue of one pooled output row, or of cols of its columns: dst[col, channel] =
// act(pooled[col, channel] + bias) (pooled: (cols, out_channels) float32 maxima).
template <class Math>
inline void write_row(const vec<Math::kWidth>* pooled, const float* bias, typename Math::Out* dst,
                      const ConvBlockGeometry& geo, int64_t cols) {
  using V = vec<Math::kWidth>;
  constexpr int W = Math::kWidth;
  const int64_t cout_vectors = geo.out_channels / W;
  for (int64_t col = 0; col < cols; ++col)
    for (int64_t v = 0; v < cout_vectors; ++v) {
      V b;
      for (int i = 0; i < W; ++i) b[i] = bias[v * W + i];
      V y = pooled[col * cout_vectors + v] + b;
      Math::store(dst + col * geo.out_col_stride + v * W, activate(y, geo.activation, W));
    }
}

// Pooled columns per work item of the direct kernel: the whole row, or for long rows (1D
// stacks: tens of thousands of columns) a multiple of 12 whose input (about kChunkBytes) stays
// in L2 while every output-channel block reads it (a whole row is re-read from memory per block:
// a 128 -> 128 channel 1D block of 80000 columns ran at 120 instead of 200 GFLOP/s).
constexpr int64_t kChunkBytes = 128 * 1024;

template <class Math>
inline int64_t chunk_cols(const ConvBlockGeometry& geo) {
  const int64_t rows = geo.pool_rows + geo.kernel_rows - 1;
  const int64_t bytes = geo.pool_cols * geo.col_step() * rows * int64_t{sizeof(typename Math::In)};
  const int64_t cols = kChunkBytes / bytes / 12 * 12;
  return cols >= 12 && cols < geo.out_cols() ? cols : geo.out_cols();
}

template <class Math>
void run(const typename Math::In* x, const typename Math::Weight* w, const float* bias,
         typename Math::Out* out, const ConvBlockGeometry& geo, int threads) {
  using V = vec<Math::kWidth>;
  constexpr int W = Math::kWidth, CV = Math::kCoutVectors;
  const int64_t out_rows = geo.out_rows(), out_cols = geo.out_cols();
  const int64_t cout_vectors = geo.out_channels / W, cout_blocks = cout_vectors / CV;
  const int64_t weight_block = geo.kernel_rows * Math::weight_run(geo) * W * CV;
  const int64_t chunk = chunk_cols<Math>(geo), chunks = (out_cols + chunk - 1) / chunk;
  const int64_t items = geo.batch * out_rows * chunks;
#pragma omp parallel num_threads(threads)
  {
    std::vector<V> pooled(static_cast<size_t>(chunk * cout_vectors));
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / (out_rows * chunks), row = item / chunks % out_rows;
      const int64_t col0 = item % chunks * chunk, cols = std::min(chunk, out_cols - col0);
      const int64_t conv_cols = cols * geo.pool_cols;  // a pooled-away tail is not computed
      for (int64_t cb = 0; cb < cout_blocks; ++cb) {
        const typename Math::Weight* wb = w + cb * weight_block;
        for (int64_t pr = 0; pr < geo.pool_rows; ++pr) {
          const typename Math::In* xr = x + n * geo.in_batch_stride +
                                        (row * geo.pool_rows + pr) * geo.in_row_stride +
                                        col0 * geo.pool_cols * geo.col_step();
          for (int64_t col = 0; col < conv_cols;) {
            const int64_t left = conv_cols - col;
            const bool first = pr == 0;
            try_tile<Math, 24>(left, xr, wb, geo, col, cb, first, pooled.data()) ||
                try_tile<Math, 12>(left, xr, wb, geo, col, cb, first, pooled.data()) ||
                try_tile<Math, 8>(left, xr, wb, geo, col, cb, first, pooled.data()) ||
                try_tile<Math, 6>(left, xr, wb, geo, col, cb, first, pooled.data()) ||
                try_tile<Math, 4>(left, xr, wb, geo, col, cb, first, pooled.data()) ||
                try_tile<Math, 3>(left, xr, wb, geo, col, cb, first, pooled.data()) ||
                try_tile<Math, 2>(left, xr, wb, geo, col, cb, first, pooled.data()) ||
                try_tile<Math, 1>(left, xr, wb, geo, col, cb, first, pooled.data());
          }
        }
      }
      write_row<Math>(pooled.data(), bias,
                      out + n * geo.out_batch_stride + row * geo.out_row_stride +
                          col0 * geo.out_col_stride,
                      geo, cols);
    }
  }
}

}  // namespace conv_block_detail
}  // namespace dlr
