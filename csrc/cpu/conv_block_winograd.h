// The fused conv block by Winograd F(2x2, 3x3) (Lavin & Gray 2016), shared by the float32 and
// bfloat16 kernels: a 3x3 conv at stride 1 makes each 2x2 tile of outputs from the 4x4 input
// patch d as A^T [U . (B^T d B)] A, with U = G g G^T the transformed kernel (packed by the
// caller): 16 multiplies per channel pair instead of 36. A 2x2 output tile is a whole window of
// a 2x2 max-pool (or a quarter of a 4x4 one), so each tile is max-pooled as soon as it is made;
// the conv output is never stored.
//
// Per work item (clip, pooled output row) and group of T tiles along the row:
//   1. input transform: v[xi][t][c] = (B^T d_t B)[xi] for the T patches, vectorised across
//      channels (T x 16 x in_channels values, in the kernel's input type);
//   2. per output-channel block and xi: m[xi][t][:] = sum_c v[xi][t][c] U[xi][c][:], on the
//      direct kernel's register tile (Math::tile with a 1x1 "kernel" of in_channels);
//   3. output transform of each tile, max over its 4 outputs, into the pooled row.
// B^T, G and A^T of F(2, 3) have entries 0, +-1 (and 1/2 in G, applied to the weights once), so
// the transforms are additions only.
#pragma once

#include <cstdint>
#include <vector>

#include "conv_block_cpu.h"
#include "conv_block_driver.h"

namespace dlr {
namespace conv_block_detail {

constexpr int kWinogradPoints = 16;  // 4 x 4 transformed points (xi) per tile

template <class Math>
inline bool supports_winograd(const ConvBlockGeometry& geo) {
  return conv_block_shape_ok(geo) && geo.kernel_rows == 3 && geo.kernel_cols == 3 &&
         geo.stride_cols == 1 && geo.pool_rows % 2 == 0 && geo.pool_cols % 2 == 0 &&
         geo.in_channels % Math::kWidth == 0 &&
         geo.out_channels % (Math::kWidth * Math::kCoutVectors) == 0;
}

// B^T d along one axis: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
template <typename V>
inline void input_transform(const V (&d)[4], V (&e)[4]) {
  e[0] = d[0] - d[2];
  e[1] = d[1] + d[2];
  e[2] = d[2] - d[1];
  e[3] = d[1] - d[3];
}

// A^T m along one axis: (m0 + m1 + m2, m1 - m2 - m3)
template <typename V>
inline void output_transform(const V (&m)[4], V& y0, V& y1) {
  y0 = m[0] + m[1] + m[2];
  y1 = m[1] - m[2] - m[3];
}

// The geometry Math::tile sees for step 2: one kernel row of one column over in_channels.
inline ConvBlockGeometry pointwise(const ConvBlockGeometry& geo) {
  ConvBlockGeometry dot = geo;
  dot.kernel_rows = 1;
  dot.kernel_cols = 1;
  dot.stride_cols = 1;
  return dot;
}

// Step 1 for T tiles whose patches start at x (top-left; tile t at column 2 t):
// v[(xi * T + t) * C + c].
template <class Math>
inline void transform_inputs(const typename Math::In* x, const ConvBlockGeometry& geo, int T,
                             typename Math::In* v) {
  using V = vec<Math::kWidth>;
  const int64_t C = geo.in_channels;
  for (int t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; c += Math::kWidth) {
      V rows[4][4];  // (B^T d)[a][b]
      for (int b = 0; b < 4; ++b) {
        V d[4], e[4];
        for (int a = 0; a < 4; ++a) d[a] = Math::load(x + a * geo.in_row_stride + (2 * t + b) * C + c);
        input_transform(d, e);
        for (int a = 0; a < 4; ++a) rows[a][b] = e[a];
      }
      for (int a = 0; a < 4; ++a) {
        V e[4];
        input_transform(rows[a], e);
        for (int b = 0; b < 4; ++b) Math::store_input(v + ((a * 4 + b) * T + t) * C + c, e[b]);
      }
    }
}

// Steps 2 and 3 of T tiles (the first at tile index tile0 of the row) for output-channel block
// cb, u that block's transformed weights; m is scratch of 16 x T x kCoutVectors vectors.
template <class Math, int T>
inline void multiply_and_pool(const typename Math::In* v, const typename Math::Weight* u,
                              const ConvBlockGeometry& geo, int64_t tile0, int64_t cb,
                              bool first_row, vec<Math::kWidth>* m, vec<Math::kWidth>* pooled) {
  using V = vec<Math::kWidth>;
  constexpr int CV = Math::kCoutVectors;
  const ConvBlockGeometry dot = pointwise(geo);
  const int64_t C = geo.in_channels, u_step = Math::weight_run(dot) * Math::kWidth * CV;
  for (int xi = 0; xi < kWinogradPoints; ++xi) {
    V acc[T][CV];
    Math::template tile<T>(v + xi * T * C, dot, u + xi * u_step, acc);
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < CV; ++j) m[(xi * T + t) * CV + j] = acc[t][j];
  }
  const int64_t cout_vectors = geo.out_channels / Math::kWidth;
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < CV; ++j) {
      V s[2][4];  // (A^T m)[p][b]
      for (int b = 0; b < 4; ++b) {
        V column[4];
        for (int a = 0; a < 4; ++a) column[a] = m[((a * 4 + b) * T + t) * CV + j];
        output_transform(column, s[0][b], s[1][b]);
      }
      V y[4];
      output_transform(s[0], y[0], y[1]);
      output_transform(s[1], y[2], y[3]);
      const V tile_max = nan_max(nan_max(y[0], y[1]), nan_max(y[2], y[3]));
      const int64_t conv_col = 2 * (tile0 + t);
      V* dst = pooled + (conv_col / geo.pool_cols) * cout_vectors + cb * CV + j;
      *dst = first_row && conv_col % geo.pool_cols == 0 ? tile_max : nan_max(*dst, tile_max);
    }
}

template <class Math, int T>
inline bool try_group(int64_t left, const typename Math::In* x, const typename Math::Weight* u,
                      const ConvBlockGeometry& geo, int64_t& tile, bool first_row,
                      typename Math::In* v, vec<Math::kWidth>* m, vec<Math::kWidth>* pooled) {
  if constexpr (T > Math::kMaxCols) {
    return false;
  } else {
    if (left < T) return false;
    transform_inputs<Math>(x + 2 * tile * geo.in_channels, geo, T, v);
    const int64_t cout_blocks = geo.out_channels / (Math::kWidth * Math::kCoutVectors);
    const int64_t u_block =
        kWinogradPoints * Math::weight_run(pointwise(geo)) * Math::kWidth * Math::kCoutVectors;
    for (int64_t cb = 0; cb < cout_blocks; ++cb)
      multiply_and_pool<Math, T>(v, u + cb * u_block, geo, tile, cb, first_row, m, pooled);
    tile += T;
    return true;
  }
}

template <class Math>
void run_winograd(const typename Math::In* x, const typename Math::Weight* u, const float* bias,
                  typename Math::Out* out, const ConvBlockGeometry& geo, int threads) {
  using V = vec<Math::kWidth>;
  const int64_t out_rows = geo.out_rows(), out_cols = geo.out_cols();
  const int64_t tiles = out_cols * geo.pool_cols / 2;  // per tile row; a pooled-away tail is skipped
  const int64_t items = geo.batch * out_rows;
  const size_t group = static_cast<size_t>(kWinogradPoints * Math::kMaxCols);
#pragma omp parallel num_threads(threads)
  {
    std::vector<V> pooled(static_cast<size_t>(out_cols * geo.out_channels / Math::kWidth));
    // v in whole vectors, so that every stored channel vector is aligned (a split store costs)
    std::vector<V> v_storage(group * static_cast<size_t>(geo.in_channels) *
                             sizeof(typename Math::In) / sizeof(V));
    typename Math::In* v = reinterpret_cast<typename Math::In*>(v_storage.data());
    std::vector<V> m(group * Math::kCoutVectors);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / out_rows, row = item % out_rows;
      for (int64_t tile_row = 0; tile_row < geo.pool_rows / 2; ++tile_row) {
        const typename Math::In* xr =
            x + n * geo.in_batch_stride + (row * geo.pool_rows + 2 * tile_row) * geo.in_row_stride;
        const bool first = tile_row == 0;
        for (int64_t tile = 0; tile < tiles;) {
          const int64_t left = tiles - tile;
          try_group<Math, 24>(left, xr, u, geo, tile, first, v, m.data(), pooled.data()) ||
              try_group<Math, 12>(left, xr, u, geo, tile, first, v, m.data(), pooled.data()) ||
              try_group<Math, 8>(left, xr, u, geo, tile, first, v, m.data(), pooled.data()) ||
              try_group<Math, 4>(left, xr, u, geo, tile, first, v, m.data(), pooled.data()) ||
              try_group<Math, 2>(left, xr, u, geo, tile, first, v, m.data(), pooled.data()) ||
              try_group<Math, 1>(left, xr, u, geo, tile, first, v, m.data(), pooled.data());
        }
      }
      write_row<Math>(pooled.data(), bias, out + n * geo.out_batch_stride + row * geo.out_row_stride,
                      geo, out_cols);
    }
  }
}

// A kernel's entry points over both algorithms.
template <class Math>
bool supports_algorithm(const ConvBlockGeometry& geo, ConvAlgorithm algorithm) {
  return algorithm == ConvAlgorithm::kWinograd ? supports_winograd<Math>(geo) : supports<Math>(geo);
}

template <class Math>
void run_algorithm(const typename Math::In* x, const typename Math::Weight* w, const float* bias,
                   typename Math::Out* out, const ConvBlockGeometry& geo, ConvAlgorithm algorithm,
                   int threads) {
  if (algorithm == ConvAlgorithm::kWinograd)
    run_winograd<Math>(x, w, bias, out, geo, threads);
  else
    run<Math>(x, w, bias, out, geo, threads);
}

}  // namespace conv_block_detail
}  // namespace dlr
