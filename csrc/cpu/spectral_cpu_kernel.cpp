// The CPU passes of the mel spectrogram and the autocorrelation tempogram around the FFTs (which
// torch's FFT library does between them): framing + window into the FFT's input rows; power +
// sparse mel projection + log written straight into the (batch, n_mels, frames) output; the
// power spectrum in place (for the inverse FFT that gives autocorrelations); autocorrelation
// rows normalised and written into (batch, lags, frames). Compiled once per instruction set,
// like dlr_cpu_kernel.cpp; rows are independent, so OpenMP splits them.
//
// The projection works on tiles of kTile frames held frequency-major (the frames are the vector
// lanes), so each non-zero filter weight is one broadcast FMA per vector and the tile's output
// (n_mels, kTile) is already in the output's layout.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "spectral_cpu.h"

namespace dlr {
namespace DLR_ISA {
namespace {

constexpr int kWidth = DLR_VEC_FLOATS;
constexpr int64_t kTile = 16;  // frames per projection tile
constexpr int kVectors = kTile / kWidth;
constexpr float kInvLn10 = 0.434294481903251827651f;
constexpr float kTinyFloat = 1.17549435e-38f;  // smallest normal float32 (torch.finfo.tiny)

typedef float vec __attribute__((vector_size(kWidth * sizeof(float))));
typedef float vec_unaligned __attribute__((vector_size(kWidth * sizeof(float)), aligned(4)));

inline vec load(const float* p) { return *reinterpret_cast<const vec_unaligned*>(p); }
inline void store(float* p, vec v) { *reinterpret_cast<vec_unaligned*>(p) = v; }
inline vec splat(float v) { return vec{} + v; }

#if defined(DLR_HAVE_MVEC) && DLR_VEC_FLOATS == 16
extern "C" vec _ZGVeN16v_logf(vec);  // glibc libmvec, AVX-512
inline vec vector_log(vec v) { return _ZGVeN16v_logf(v); }
#elif defined(DLR_HAVE_MVEC) && DLR_VEC_FLOATS == 8
extern "C" vec _ZGVdN8v_logf(vec);  // glibc libmvec, AVX2
inline vec vector_log(vec v) { return _ZGVdN8v_logf(v); }
#elif defined(DLR_HAVE_MVEC) && DLR_VEC_FLOATS == 4
extern "C" vec _ZGVbN4v_logf(vec);  // glibc libmvec, SSE2
inline vec vector_log(vec v) { return _ZGVbN4v_logf(v); }
#else
inline vec vector_log(vec v) {
  for (int i = 0; i < kWidth; ++i) v[i] = std::log(v[i]);
  return v;
}
#endif

// power_t[f * kTile + i] = |spec[r0 + i, f]|^power for the tile's rows (zeros past `count`),
// kTile x kTile blocks at a time: contiguous reads of each row, a transpose in L1.
void tile_power(const float* spec, int64_t count, int64_t n_freq, float power, float* power_t) {
  float block[kTile][kTile];
  for (int64_t f0 = 0; f0 < n_freq; f0 += kTile) {
    const int64_t width = std::min(kTile, n_freq - f0);
    for (int64_t i = 0; i < kTile; ++i) {
      if (i >= count) {
        std::fill(block[i], block[i] + kTile, 0.f);
        continue;
      }
      const float* row = spec + 2 * (i * n_freq + f0);
#pragma omp simd
      for (int64_t j = 0; j < width; ++j)
        block[i][j] = row[2 * j] * row[2 * j] + row[2 * j + 1] * row[2 * j + 1];
    }
    for (int64_t j = 0; j < width; ++j)
      for (int64_t i = 0; i < kTile; ++i) power_t[(f0 + j) * kTile + i] = block[i][j];
  }
  if (power == 1.f) {
    for (int64_t k = 0; k < n_freq * kTile; ++k) power_t[k] = std::sqrt(power_t[k]);
  } else if (power != 2.f) {
    for (int64_t k = 0; k < n_freq * kTile; ++k) power_t[k] = std::pow(power_t[k], 0.5f * power);
  }
}

// mel_t[m * kTile + i] = (log of) sum_k weights[m, k] power_t[(starts[m] + k) * kTile + i].
void tile_project(const float* power_t, const MelFilters& filters, float log_multiplier,
                  float amin, float* mel_t) {
  const vec scale = splat(log_multiplier * kInvLn10), floor = splat(amin);
  for (int64_t m = 0; m < filters.n_mels; ++m) {
    vec acc[kVectors] = {};
    const float* w = filters.weights + filters.offsets[m];
    const float* p = power_t + filters.starts[m] * kTile;
    for (int64_t k = 0; k < filters.lengths[m]; ++k)
      for (int j = 0; j < kVectors; ++j) acc[j] += w[k] * load(p + k * kTile + j * kWidth);
    for (int j = 0; j < kVectors; ++j) {
      if (log_multiplier != 0.f) acc[j] = scale * vector_log(acc[j] > floor ? acc[j] : floor);
      store(mel_t + m * kTile + j * kWidth, acc[j]);
    }
  }
}

// Rows [g0, g0 + count) of a channel-major tile (tile[c * kTile + i]: channel c of row i) into
// out (batch, channels, n_frames).
void tile_store(const float* tile, int64_t g0, int64_t count, int64_t channels, int64_t n_frames,
                float* out) {
  const int64_t clip = g0 / n_frames, t0 = g0 % n_frames;
  if (t0 + count <= n_frames) {  // one clip: every channel's row is contiguous
    float* dst = out + clip * channels * n_frames + t0;
    for (int64_t c = 0; c < channels; ++c)
      std::memcpy(dst + c * n_frames, tile + c * kTile, count * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    const int64_t g = g0 + i;
    float* dst = out + (g / n_frames) * channels * n_frames + g % n_frames;
    for (int64_t c = 0; c < channels; ++c) dst[c * n_frames] = tile[c * kTile + i];
  }
}

// Index into a clip of `length` samples of position i of the padded signal; -1 for a zero.
inline int64_t padded_index(int64_t i, int64_t length, PadMode mode) {
  if (i >= 0 && i < length) return i;
  switch (mode) {
    case PadMode::kReflect: {  // numpy "reflect": ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...
      if (length == 1) return 0;
      const int64_t period = 2 * (length - 1);
      int64_t k = i % period;
      if (k < 0) k += period;
      return k < length ? k : period - k;
    }
    case PadMode::kEdge:
      return i < 0 ? 0 : length - 1;
    default:
      return -1;
  }
}

}  // namespace

void frame_window(const float* signal, int64_t signal_length, int64_t n_frames, int64_t hop,
                  int64_t offset, PadMode pad_mode, int64_t first, int64_t rows,
                  const float* window, int64_t span, float* frames, int64_t frame_stride,
                  int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = first + r;
    const float* clip = signal + (g / n_frames) * signal_length;
    const int64_t start = offset + (g % n_frames) * hop;
    float* dst = frames + r * frame_stride;
    if (start >= 0 && start + span <= signal_length) {
#pragma omp simd
      for (int64_t j = 0; j < span; ++j) dst[j] = clip[start + j] * window[j];
      continue;
    }
    for (int64_t j = 0; j < span; ++j) {
      const int64_t i = padded_index(start + j, signal_length, pad_mode);
      dst[j] = i < 0 ? 0.f : clip[i] * window[j];
    }
  }
}

void mel_project(const float* spec, int64_t rows, int64_t n_freq, int64_t first,
                 int64_t n_frames, const MelFilters& filters, float power,
                 float log_multiplier, float amin, float* out, int threads) {
  const int64_t tiles = (rows + kTile - 1) / kTile;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> power_t(n_freq * kTile), mel_t(filters.n_mels * kTile);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t r0 = i * kTile, count = std::min(kTile, rows - r0);
      tile_power(spec + 2 * r0 * n_freq, count, n_freq, power, power_t.data());
      tile_project(power_t.data(), filters, log_multiplier, amin, mel_t.data());
      tile_store(mel_t.data(), first + r0, count, filters.n_mels, n_frames, out);
    }
  }
}

void power_in_place(float* spec, int64_t rows, int64_t n_freq, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = spec + 2 * r * n_freq;
    for (int64_t f = 0; f < n_freq; ++f) {
      row[2 * f] = row[2 * f] * row[2 * f] + row[2 * f + 1] * row[2 * f + 1];
      row[2 * f + 1] = 0.f;
    }
  }
}

void lag_store(const float* lags, int64_t rows, int64_t row_stride, int64_t first,
               int64_t n_frames, int64_t max_lag, bool normalize, float* out, int threads) {
  const int64_t tiles = (rows + kTile - 1) / kTile;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> tile(max_lag * kTile);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t r0 = i * kTile, count = std::min(kTile, rows - r0);
      for (int64_t j = 0; j < count; ++j) {
        const float* row = lags + (r0 + j) * row_stride;
        // lag 0 is the frame's energy and its largest |autocorrelation| (Cauchy-Schwarz)
        const float scale = normalize && row[0] >= kTinyFloat ? 1.f / row[0] : 1.f;
        for (int64_t l = 0; l < max_lag; ++l) tile[l * kTile + j] = row[l] * scale;
      }
      tile_store(tile.data(), first + r0, count, max_lag, n_frames, out);
    }
  }
}

}  // namespace DLR_ISA
}  // namespace dlr
