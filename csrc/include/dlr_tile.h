// Tile math of the fused DLR op, shared by the C++ CPU kernels and the CUDA kernels.
//
// Layouts (all contiguous, float):
//   x      (batch, samples)                      raw audio at 8 kHz
//   weight (branches, channels, taps)            cross-correlation taps, no flip
//   bias   (branches, channels)
//   out    (batch, branches * channels, frames)  channel = branch * channels + c
// frames = (samples - (taps - 1) * max(dilations)) / pool, tail dropped (DESIGN §3).
#pragma once

#include <cstdint>
#if !defined(__CUDACC__)
#include <stdexcept>
#include <vector>
#endif

#if defined(__CUDACC__)
#define DLR_HD __host__ __device__ __forceinline__
#else
#define DLR_HD inline
#endif

namespace dlr {

struct Geometry {
  int64_t batch;
  int64_t samples;
  int64_t branches;
  int64_t channels;
  int64_t taps;
  int64_t pool;
  int64_t frames;

  DLR_HD int64_t out_channels() const { return branches * channels; }
  // Offset of out[n, branch * channels + c, frame].
  DLR_HD int64_t out_index(int64_t n, int64_t branch, int64_t c, int64_t frame) const {
    return (n * out_channels() + branch * channels + c) * frames + frame;
  }
  DLR_HD int64_t weight_index(int64_t branch, int64_t c, int64_t k) const {
    return (branch * channels + c) * taps + k;
  }
};

DLR_HD int64_t receptive_field(int64_t taps, int64_t max_dilation) {
  return (taps - 1) * max_dilation + 1;
}

DLR_HD int64_t output_frames(int64_t samples, int64_t taps, int64_t max_dilation, int64_t pool) {
  int64_t valid = samples - receptive_field(taps, max_dilation) + 1;
  return valid > 0 ? valid / pool : 0;
}

// Geometry of a call; dilations holds one entry per branch.
inline Geometry make_geometry(int64_t batch, int64_t samples, int64_t channels, int64_t taps,
                              int64_t pool, const int64_t* dilations, int64_t branches) {
  int64_t max_dilation = 1;
  for (int64_t i = 0; i < branches; ++i)
    max_dilation = dilations[i] > max_dilation ? dilations[i] : max_dilation;
  return {batch, samples, branches, channels, taps, pool,
          output_frames(samples, taps, max_dilation, pool)};
}

#if !defined(__CUDACC__)
// The same from a host vector of dilations (the Python bindings' form).
inline Geometry make_geometry(int64_t batch, int64_t samples, int64_t channels, int64_t taps,
                              int64_t pool, const std::vector<int64_t>& dilations) {
  if (dilations.empty()) throw std::invalid_argument("at least one dilation is required");
  return make_geometry(batch, samples, channels, taps, pool, dilations.data(),
                       static_cast<int64_t>(dilations.size()));
}
#endif

// Pre-activation of one channel at one time step: bias + sum_k w[k] * x[k * dilation].
// x points at the step's first tap, w at the channel's taps.
template <typename T>
DLR_HD T preactivation(const T* x, const T* w, T bias, int64_t taps, int64_t dilation) {
  T acc = bias;
  for (int64_t k = 0; k < taps; ++k) acc += w[k] * x[k * dilation];
  return acc;
}

// ReLU that keeps NaN, as torch.relu: only a step known to be negative becomes 0 (fmaxf and
// std::max would turn NaN into 0).
template <typename T>
DLR_HD T relu(T v) {
  return v < T(0) ? T(0) : v;
}

// Gradient reaching one full-rate step from its pooled output: the ReLU mask of the
// recomputed pre-activation times the pooled gradient / pool. A NaN pre-activation passes the
// gradient, as torch's ReLU backward (``result <= 0 ? 0 : grad``) does.
template <typename T>
DLR_HD T step_gradient(T preact, T pooled_grad, T inv_pool) {
  return preact <= T(0) ? T(0) : pooled_grad * inv_pool;
}

}  // namespace dlr
