// Fused DLR forward in bfloat16 precision on CPUs with AVX512_BF16 (inference only): the same
// conv + ReLU + crop + concat + average pool as dlr_cpu_kernel.cpp, but x and the weights are
// rounded to bfloat16 (round to nearest even) and each VDPBF16PS multiplies two taps per fp32
// lane, so a register tile does twice the taps per instruction of the float32 FMA kernel. Sums,
// bias, ReLU and pooling stay float32.
//
// x is rounded to bfloat16 once per call. Per work item (clip, branch, block of frames) it is
// rearranged into tap pairs:
// pairs[p][t] holds (bf16 x[t + 2p d], bf16 x[t + (2p + 1) d]) in one 32-bit lane, so one load
// feeds the products of taps 2p and 2p + 1 for 16 time steps. The register tile is 8 channels x
// 32 time steps, as the float32 kernel's AVX-512 tile. Needs an even number of taps, channels
// a multiple of 8 and a pool a multiple of 32 (the DLR's 16, 32 and 256).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dlr_cpu.h"

namespace dlr {
namespace avx512bf16 {
namespace {

constexpr int kLanes = 16;
constexpr int kVectors = 2;
constexpr int kTile = kLanes * kVectors;  // time steps per register tile
constexpr int kGroup = 8;                 // channels per register tile
constexpr int64_t kFramesPerItem = 4;

typedef uint32_t pairs_vec __attribute__((vector_size(64)));
typedef uint32_t pairs_unaligned __attribute__((vector_size(64), aligned(4)));

// bfloat16 bits of float bits u, round to nearest even, in the high half of each lane; a NaN
// is made quiet instead (rounding could carry its mantissa into the exponent: Inf or -0).
inline pairs_vec round_bf16_high(pairs_vec u) {
  const pairs_vec is_nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  return is_nan ? (u | 0x00400000u) : u + 0x7FFFu + ((u >> 16) & 1u);
}

// bf16[0..16) = bfloat16 of x[0..16), rounded as round_bf16_high.
inline void round_to_bf16(const float* x, uint16_t* bf16) {
  const pairs_vec high = round_bf16_high(*reinterpret_cast<const pairs_unaligned*>(x));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(bf16),
                      _mm512_cvtepi32_epi16(_mm512_srli_epi32((__m512i)high, 16)));
}

// Lanes t of pairs: low half lo[t], high half hi[t] (16 bfloat16 values each).
inline pairs_vec pack_pairs(const uint16_t* lo, const uint16_t* hi) {
  const __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo)));
  const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi)));
  return (pairs_vec)_mm512_or_si512(a, _mm512_slli_epi32(b, 16));
}

inline uint32_t round_bf16_high(uint32_t u) {
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? u | 0x00400000u : u + 0x7FFFu + ((u >> 16) & 1u);
}

inline uint16_t to_bf16(float value) {
  uint32_t u;
  std::memcpy(&u, &value, 4);
  return static_cast<uint16_t>(round_bf16_high(u) >> 16);
}

inline uint32_t pack_pair(float lo, float hi) {
  return static_cast<uint32_t>(to_bf16(lo)) | static_cast<uint32_t>(to_bf16(hi)) << 16;
}

inline float horizontal_sum(__m512 v) { return _mm512_reduce_add_ps(v); }

void forward_item(const uint16_t* xn, const uint32_t* w_pairs, const float* bias, float* out,
                  const Geometry& geo, int64_t n, int64_t branch, int64_t dilation,
                  int64_t frame_begin, int64_t frame_end, std::vector<pairs_vec>& pairs) {
  const int64_t n_pairs = geo.taps / 2;
  const int64_t steps = (frame_end - frame_begin) * geo.pool, t_begin = frame_begin * geo.pool;
  const int64_t vectors = steps / kLanes;
  pairs.resize(static_cast<size_t>(n_pairs * vectors));
  for (int64_t p = 0; p < n_pairs; ++p) {
    const uint16_t* lo = xn + t_begin + 2 * p * dilation;
    const uint16_t* hi = lo + dilation;
    for (int64_t v = 0; v < vectors; ++v)
      pairs[p * vectors + v] = pack_pairs(lo + v * kLanes, hi + v * kLanes);
  }
  const __m512 zero = _mm512_setzero_ps();
  const float inv_pool = 1.f / static_cast<float>(geo.pool);
  for (int64_t f = frame_begin; f < frame_end; ++f) {
    const int64_t v0 = (f - frame_begin) * geo.pool / kLanes;
    for (int64_t c0 = 0; c0 < geo.channels; c0 += kGroup) {
      __m512 sum[kGroup];
      for (int g = 0; g < kGroup; ++g) sum[g] = zero;
      for (int64_t v = v0; v < v0 + geo.pool / kLanes; v += kVectors) {
        __m512 acc[kGroup][kVectors];
#pragma GCC unroll 8
        for (int g = 0; g < kGroup; ++g)
          for (int j = 0; j < kVectors; ++j) acc[g][j] = _mm512_set1_ps(bias[c0 + g]);
        for (int64_t p = 0; p < n_pairs; ++p) {
          __m512bh a[kVectors];
          for (int j = 0; j < kVectors; ++j) a[j] = (__m512bh)pairs[p * vectors + v + j];
#pragma GCC unroll 8
          for (int g = 0; g < kGroup; ++g) {
            const __m512bh wv = (__m512bh)_mm512_set1_epi32(
                static_cast<int>(w_pairs[(c0 + g) * n_pairs + p]));
            for (int j = 0; j < kVectors; ++j) acc[g][j] = _mm512_dpbf16_ps(acc[g][j], a[j], wv);
          }
        }
#pragma GCC unroll 8
        for (int g = 0; g < kGroup; ++g)
          for (int j = 0; j < kVectors; ++j) sum[g] += _mm512_max_ps(zero, acc[g][j]);  // a NaN operand: MAXPS returns the 2nd
      }
      for (int g = 0; g < kGroup; ++g)
        out[geo.out_index(n, branch, c0 + g, f)] = horizontal_sum(sum[g]) * inv_pool;
    }
  }
}

}  // namespace

bool forward_bf16_supports(const Geometry& geo) {
  return geo.taps % 2 == 0 && geo.channels % kGroup == 0 && geo.pool % kTile == 0;
}

void forward_bf16(const float* x, const float* w, const float* b, const int64_t* dilations,
                  float* out, const Geometry& geo, int threads) {
  // weight pairs (branches, channels, taps / 2), rounded once for every item
  std::vector<uint32_t> w_pairs(static_cast<size_t>(geo.branches * geo.channels * geo.taps / 2));
  for (size_t i = 0; i < w_pairs.size(); ++i) w_pairs[i] = pack_pair(w[2 * i], w[2 * i + 1]);
  const int64_t blocks = (geo.frames + kFramesPerItem - 1) / kFramesPerItem;
  const int64_t items = geo.batch * geo.branches * blocks;
  const int64_t values = geo.batch * geo.samples;
  std::vector<uint16_t> x_bf16(static_cast<size_t>(values));
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < values / kLanes; ++i)
      round_to_bf16(x + i * kLanes, x_bf16.data() + i * kLanes);
#pragma omp single
    for (int64_t i = values / kLanes * kLanes; i < values; ++i) x_bf16[i] = to_bf16(x[i]);
    std::vector<pairs_vec> pairs;
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t block = item % blocks;
      const int64_t branch = (item / blocks) % geo.branches;
      const int64_t n = item / (blocks * geo.branches);
      const int64_t frame_end = std::min(geo.frames, (block + 1) * kFramesPerItem);
      forward_item(x_bf16.data() + n * geo.samples, w_pairs.data() + branch * geo.channels * geo.taps / 2,
                   b + branch * geo.channels, out, geo, n, branch, dilations[branch],
                   block * kFramesPerItem, frame_end, pairs);
    }
  }
}

}  // namespace avx512bf16
}  // namespace dlr
