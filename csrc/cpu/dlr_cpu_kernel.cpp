// Fused DLR forward and backward on the CPU: dilated conv + ReLU + crop + concat + average
// pool in one pass, never writing the full-rate (batch, channels, samples) map.
//
// This file is compiled once per instruction set (see CMakeLists.txt): DLR_ISA names the
// namespace, DLR_VEC_FLOATS the vector width and DLR_CHANNEL_GROUP the channels kept in
// registers. The register tile is DLR_CHANNEL_GROUP channels x (2 * DLR_VEC_FLOATS) time
// steps; every tap loads two vectors of x and issues 2 * DLR_CHANNEL_GROUP FMAs.
// Work is split by OpenMP over (batch, branch, frame block) forward and (batch, branch)
// backward, handed out dynamically (a thread that shares its core with decode threads takes
// fewer items instead of holding the others at the barrier); each work item owns its outputs,
// so results do not depend on the thread count or the schedule.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dlr_cpu.h"
#include "dlr_tile.h"

namespace dlr {
namespace DLR_ISA {
namespace {

constexpr int kWidth = DLR_VEC_FLOATS;
constexpr int kVectors = 2;
constexpr int kTile = kWidth * kVectors;  // time steps per register tile
constexpr int kGroup = DLR_CHANNEL_GROUP;
constexpr int64_t kFramesPerItem = 4;

typedef float vec __attribute__((vector_size(kWidth * sizeof(float))));
typedef float vec_unaligned __attribute__((vector_size(kWidth * sizeof(float)), aligned(4)));

inline vec load(const float* p) { return *reinterpret_cast<const vec_unaligned*>(p); }
inline void store(float* p, vec v) { *reinterpret_cast<vec_unaligned*>(p) = v; }
inline vec splat(float v) { return vec{} + v; }
// dlr::relu of dlr_tile.h on a vector: keeps NaN (as torch.relu).
inline vec relu(vec v) { return v < 0 ? 0 : v; }
inline float horizontal_sum(vec v) {
  float s = 0.f;
  for (int i = 0; i < kWidth; ++i) s += v[i];
  return s;
}

// Pre-activations of channels c0..c0+kGroup at kTile steps; xs points at the tile's first step.
inline void tile_preactivation(const float* xs, const float* w, const float* b, int64_t c0,
                               int64_t taps, int64_t dilation, vec acc[kGroup][kVectors]) {
#pragma GCC unroll 16
  for (int g = 0; g < kGroup; ++g)
    for (int j = 0; j < kVectors; ++j) acc[g][j] = splat(b[c0 + g]);
  for (int64_t k = 0; k < taps; ++k) {
    vec xv[kVectors];
    for (int j = 0; j < kVectors; ++j) xv[j] = load(xs + k * dilation + j * kWidth);
#pragma GCC unroll 16
    for (int g = 0; g < kGroup; ++g) {
      const float wk = w[(c0 + g) * taps + k];
      for (int j = 0; j < kVectors; ++j) acc[g][j] += wk * xv[j];
    }
  }
}

// Pooled ReLU sum of one channel over [t_begin, t_end) from t = 0 of the branch, scalar.
inline float scalar_pooled_sum(const float* x, const float* wc, float bc, int64_t taps,
                               int64_t dilation, int64_t t_begin, int64_t t_end) {
  float s = 0.f;
  for (int64_t t = t_begin; t < t_end; ++t)
    s += dlr::relu(preactivation(x + t, wc, bc, taps, dilation));
  return s;
}

// One (clip, branch) slice of the inputs and the split of its loops into register tiles
// (vectorised) and scalar remainders (pool % kTile steps, channels % kGroup channels).
struct WorkItem {
  const float* x;  // (samples) of clip n
  const float* w;  // (channels, taps) of the branch
  const float* b;  // (channels) of the branch
  float inv_pool;
  int64_t vector_steps;  // steps of a pool window covered by whole register tiles
  int64_t grouped;       // channels covered by whole channel groups

  WorkItem(const float* x_all, const float* w_all, const float* b_all, const Geometry& geo,
           int64_t n, int64_t branch)
      : x(x_all + n * geo.samples),
        w(w_all + branch * geo.channels * geo.taps),
        b(b_all + branch * geo.channels),
        inv_pool(1.f / static_cast<float>(geo.pool)),
        vector_steps(geo.pool / kTile * kTile),
        grouped(geo.channels / kGroup * kGroup) {}
};

void forward_item(const float* x, const float* w, const float* b, float* out,
                  const Geometry& geo, int64_t n, int64_t branch, int64_t dilation,
                  int64_t frame_begin, int64_t frame_end) {
  const WorkItem item(x, w, b, geo, n, branch);
  const float *xn = item.x, *wb = item.w, *bb = item.b;
  const float inv_pool = item.inv_pool;
  const int64_t vector_steps = item.vector_steps, grouped = item.grouped;
  for (int64_t f = frame_begin; f < frame_end; ++f) {
    const int64_t t0 = f * geo.pool;
    for (int64_t c0 = 0; c0 < grouped; c0 += kGroup) {
      vec sum[kGroup];
      for (int g = 0; g < kGroup; ++g) sum[g] = splat(0.f);
      for (int64_t t = 0; t < vector_steps; t += kTile) {
        vec acc[kGroup][kVectors];
        tile_preactivation(xn + t0 + t, wb, bb, c0, geo.taps, dilation, acc);
#pragma GCC unroll 16
        for (int g = 0; g < kGroup; ++g)
          for (int j = 0; j < kVectors; ++j) sum[g] += relu(acc[g][j]);
      }
      for (int g = 0; g < kGroup; ++g) {
        const int64_t c = c0 + g;
        const float tail = scalar_pooled_sum(xn, wb + c * geo.taps, bb[c], geo.taps, dilation,
                                             t0 + vector_steps, t0 + geo.pool);
        out[geo.out_index(n, branch, c, f)] = (horizontal_sum(sum[g]) + tail) * inv_pool;
      }
    }
    for (int64_t c = grouped; c < geo.channels; ++c) {
      const float s = scalar_pooled_sum(xn, wb + c * geo.taps, bb[c], geo.taps, dilation, t0,
                                        t0 + geo.pool);
      out[geo.out_index(n, branch, c, f)] = s * inv_pool;
    }
  }
}

// Backward of one full-rate step of one channel, scalar: accumulates into the item's buffers.
inline void scalar_step_backward(const float* xs, const float* wc, float bc, float pooled_grad,
                                 int64_t taps, int64_t dilation, float* gw_c, float* gb_c,
                                 float* gx_s) {
  const float g = step_gradient(preactivation(xs, wc, bc, taps, dilation), pooled_grad, 1.f);
  if (g == 0.f) return;
  *gb_c += g;
  for (int64_t k = 0; k < taps; ++k) {
    gw_c[k] += g * xs[k * dilation];
    if (gx_s) gx_s[k * dilation] += g * wc[k];
  }
}

void backward_item(const float* grad_out, const float* x, const float* w, const float* b,
                   const Geometry& geo, int64_t n, int64_t branch, int64_t dilation,
                   float* gx, float* gw, float* gb) {
  // gx: (samples) or nullptr, gw: (channels, taps), gb: (channels), all zeroed, this item's.
  const WorkItem item(x, w, b, geo, n, branch);
  const float *xn = item.x, *wb = item.w, *bb = item.b;
  const float inv_pool = item.inv_pool;
  const int64_t vector_steps = item.vector_steps, grouped = item.grouped;
  std::vector<vec> gw_vec(static_cast<size_t>(grouped * geo.taps), splat(0.f));
  std::vector<vec> gb_vec(static_cast<size_t>(grouped), splat(0.f));
  for (int64_t f = 0; f < geo.frames; ++f) {
    const int64_t t0 = f * geo.pool;
    for (int64_t c0 = 0; c0 < grouped; c0 += kGroup) {
      float pooled[kGroup];
      bool any = false;
      for (int g = 0; g < kGroup; ++g) {
        pooled[g] = grad_out[geo.out_index(n, branch, c0 + g, f)] * inv_pool;
        any = any || pooled[g] != 0.f;
      }
      if (!any) continue;
      for (int64_t t = 0; t < vector_steps; t += kTile) {
        const float* xs = xn + t0 + t;
        vec grad[kGroup][kVectors];
        tile_preactivation(xs, wb, bb, c0, geo.taps, dilation, grad);
#pragma GCC unroll 16
        for (int g = 0; g < kGroup; ++g)
          for (int j = 0; j < kVectors; ++j) {
            grad[g][j] = grad[g][j] <= 0 ? splat(0.f) : splat(pooled[g]);  // as step_gradient
            gb_vec[c0 + g] += grad[g][j];
          }
        for (int64_t k = 0; k < geo.taps; ++k) {
          vec xv[kVectors];
          for (int j = 0; j < kVectors; ++j) xv[j] = load(xs + k * dilation + j * kWidth);
          vec h[kVectors] = {};
#pragma GCC unroll 16
          for (int g = 0; g < kGroup; ++g) {
            vec& gwk = gw_vec[(c0 + g) * geo.taps + k];
            const float wk = wb[(c0 + g) * geo.taps + k];
            for (int j = 0; j < kVectors; ++j) {
              gwk += grad[g][j] * xv[j];
              h[j] += wk * grad[g][j];
            }
          }
          if (gx)
            for (int j = 0; j < kVectors; ++j) {
              float* p = gx + t0 + t + k * dilation + j * kWidth;
              store(p, load(p) + h[j]);
            }
        }
      }
      for (int g = 0; g < kGroup; ++g) {
        const int64_t c = c0 + g;
        for (int64_t t = t0 + vector_steps; t < t0 + geo.pool; ++t)
          scalar_step_backward(xn + t, wb + c * geo.taps, bb[c], pooled[g], geo.taps, dilation,
                               gw + c * geo.taps, gb + c, gx ? gx + t : nullptr);
      }
    }
    for (int64_t c = grouped; c < geo.channels; ++c) {
      const float pooled = grad_out[geo.out_index(n, branch, c, f)] * inv_pool;
      for (int64_t t = t0; t < t0 + geo.pool; ++t)
        scalar_step_backward(xn + t, wb + c * geo.taps, bb[c], pooled, geo.taps, dilation,
                             gw + c * geo.taps, gb + c, gx ? gx + t : nullptr);
    }
  }
  for (int64_t c = 0; c < grouped; ++c) {
    gb[c] += horizontal_sum(gb_vec[c]);
    for (int64_t k = 0; k < geo.taps; ++k) gw[c * geo.taps + k] += horizontal_sum(gw_vec[c * geo.taps + k]);
  }
}

}  // namespace

void forward(const float* x, const float* w, const float* b, const int64_t* dilations,
             float* out, const Geometry& geo, int threads) {
  const int64_t blocks = (geo.frames + kFramesPerItem - 1) / kFramesPerItem;
  const int64_t items = geo.batch * geo.branches * blocks;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t block = item % blocks;
    const int64_t branch = (item / blocks) % geo.branches;
    const int64_t n = item / (blocks * geo.branches);
    const int64_t frame_end = std::min(geo.frames, (block + 1) * kFramesPerItem);
    forward_item(x, w, b, out, geo, n, branch, dilations[branch], block * kFramesPerItem,
                 frame_end);
  }
}

void backward(const float* grad_out, const float* x, const float* w, const float* b,
              const int64_t* dilations, float* grad_x_parts, float* grad_w_parts,
              float* grad_b_parts, const Geometry& geo, int threads) {
  const int64_t items = geo.batch * geo.branches;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t branch = item % geo.branches;
    const int64_t n = item / geo.branches;
    float* gx = grad_x_parts ? grad_x_parts + item * geo.samples : nullptr;
    backward_item(grad_out, x, w, b, geo, n, branch, dilations[branch], gx,
                  grad_w_parts + item * geo.channels * geo.taps,
                  grad_b_parts + item * geo.channels);
  }
}

void peak_abs(const float* x, int64_t batch, int64_t samples, float* out, int threads) {
  typedef int32_t ivec __attribute__((vector_size(kWidth * sizeof(int32_t))));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t n = 0; n < batch; ++n) {
    const float* row = x + n * samples;
    float* dst = out + n * samples;
    vec peaks{};
    ivec nans{};
    const int64_t vectors = samples / kWidth * kWidth;
    for (int64_t t = 0; t < vectors; t += kWidth) {  // explicit vectors: GCC keeps fmax scalar
      const vec v = load(row + t);
      const vec magnitude = (vec)((ivec)v & 0x7FFFFFFF);
      peaks = magnitude > peaks ? magnitude : peaks;
      nans |= v != v;
    }
    float peak = 0.f;
    bool nan = false;
    for (int i = 0; i < kWidth; ++i) {
      peak = std::max(peak, peaks[i]);
      nan = nan || nans[i] != 0;
    }
    for (int64_t t = vectors; t < samples; ++t) {
      peak = std::max(peak, std::fabs(row[t]));
      nan = nan || row[t] != row[t];
    }
    // as torch: a NaN peak makes the whole clip NaN; a silent clip is divided by 1
    const float divisor = nan ? std::numeric_limits<float>::quiet_NaN() : peak > 0.f ? peak : 1.f;
#pragma omp simd
    for (int64_t t = 0; t < samples; ++t) dst[t] = std::fabs(row[t] / divisor);
  }
}

}  // namespace DLR_ISA
}  // namespace dlr
