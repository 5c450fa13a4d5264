// The mel spectrogram, the autocorrelation tempogram, the real cepstrum and the log magnitude on
// CPU, fused per tile of kLanes consecutive frames (spectral_tiles): framing + window straight
// into the lanes of a batched FFT (lane_fft.h), the real FFT, power, then the sparse mel
// projection + log (written straight into the (batch, n_mels, frames) output); or, for the
// tempogram, the inverse real FFT of the power (autocorrelations), normalised by lag 0, into
// (batch, lags, frames); or the inverse real FFT of log(|X| + floor) (the real cepstrum); or
// log(|X| + floor) itself. Nothing full-rate leaves the tile, whose buffers stay in the core's
// L2. Compiled once per instruction set, like dlr_cpu_kernel.cpp; tiles are independent, so
// OpenMP splits them.
//
// Frames are held frequency-major with the frames as vector lanes throughout, so each
// butterfly and each non-zero filter weight is one broadcast FMA per vector, and a tile's output
// (channels, kLanes) is already in the output's layout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "spectral_cpu.h"

namespace dlr {
namespace DLR_ISA {
namespace {

#include "lane_fft.h"

constexpr int kWidth = DLR_VEC_FLOATS;
constexpr int64_t kTile = kLanes;  // frames per tile
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
      if (log_multiplier != 0.f) acc[j] = scale * vector_log(acc[j] < floor ? floor : acc[j]);  // NaN stays NaN
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


// Lanes [0, count) of a tile: frame g0 + i, windowed, tap j in lane i of data[j * step] (step 1:
// the frame's even and odd samples as the real and imaginary parts of an n_fft / 2-point FFT;
// step 2, odd n_fft: the real parts of an n_fft-point FFT). Everything else in data (2 *
// LaneFft(n_fft / step).size() lanes) is zeroed. Taps are read 16 per frame and transposed.
void frame_tile(const Framing& f, int64_t g0, int64_t count, int64_t n_fft, lane* data) {
  const int64_t step = n_fft % 2 == 1 ? 2 : 1;
  if (step == 2) {
    std::fill(data, data + 2 * n_fft, lane{});
  } else {
    std::fill(data + f.span, data + n_fft, lane{});
  }
  const float* clips[kLanes];
  int64_t starts[kLanes];
  for (int64_t i = 0; i < count; ++i) {
    const int64_t g = g0 + i;
    clips[i] = f.signal + (g / f.n_frames) * f.signal_length;
    starts[i] = f.offset + (g % f.n_frames) * f.hop;
  }
  // The signal the next tile adds (kTile hops past this tile's end), prefetched a share per
  // step: the frames' 16 interleaved streams are more than the hardware prefetcher follows.
  const float* ahead = clips[count - 1] + starts[count - 1] + f.span;
  const int64_t steps = (f.span + kLanes - 1) / kLanes;
  const int64_t ahead_step = (kTile * f.hop + steps - 1) / steps;
  lane rows[kLanes];
  for (int64_t j0 = 0; j0 < f.span; j0 += kLanes) {
    for (int64_t a = 0; a < ahead_step; a += kLanes) __builtin_prefetch(ahead + a);
    ahead += ahead_step;
    const int64_t width = std::min<int64_t>(kLanes, f.span - j0);
    lane window{};
    if (width == kLanes) {
      window = *reinterpret_cast<const lane_unaligned*>(f.window + j0);
    } else {
      for (int64_t j = 0; j < width; ++j) window[j] = f.window[j0 + j];
    }
    for (int64_t i = 0; i < kLanes; ++i) {
      if (i >= count) {
        rows[i] = lane{};
        continue;
      }
      const int64_t start = starts[i] + j0;
      if (width == kLanes && start >= 0 && start + kLanes <= f.signal_length) {
        rows[i] = *reinterpret_cast<const lane_unaligned*>(clips[i] + start) * window;
        continue;
      }
      lane taps{};
      for (int64_t j = 0; j < width; ++j) {
        const int64_t k = padded_index(start + j, f.signal_length, f.pad_mode);
        taps[j] = k < 0 ? 0.f : clips[i][k];
      }
      rows[i] = taps * window;
    }
    transpose(rows);
    for (int64_t j = 0; j < width; ++j) data[(j0 + j) * step] = rows[j];
  }
}

// The spectra of a tile's frames: an FFT of n_fft / 2 points of the frames' even and odd samples
// as real and imaginary parts (even n_fft), or of n_fft points (odd).
class TileSpectrum {
 public:
  explicit TileSpectrum(int64_t n_fft)
      : n_fft_(n_fft), fft_(n_fft % 2 == 0 ? n_fft / 2 : n_fft) {
    if (n_fft % 2 == 0)
      for (int64_t k = 0; k <= n_fft / 2; ++k) roots_.push_back(unit_root(k, n_fft));
  }

  int64_t n_fft() const { return n_fft_; }
  int64_t n_freq() const { return n_fft_ / 2 + 1; }
  const LaneFft& fft() const { return fft_; }

  // power_t[k * kTile + i] = |X_i[k]|^2, k < n_freq, of the frames framed into data (frame_tile);
  // data and scratch (2 fft().size() lanes each) are overwritten.
  void power(lane* data, lane* scratch, float* power_t) const {
    const lane* z = fft_.forward(data, scratch);
    lane* out = reinterpret_cast<lane*>(power_t);
    if (n_fft_ % 2 == 1) {
      for (int64_t k = 0; k < n_freq(); ++k) out[k] = z[2 * k] * z[2 * k] + z[2 * k + 1] * z[2 * k + 1];
      return;
    }
    // X[k] = E + w^k O: E, -i O the halves of Z[k] +- conj(Z[m - k]) (the even and odd samples'
    // spectra), w = exp(-2 pi i / n_fft); Z[m] is Z[0].
    const int64_t m = fft_.size();
    for (int64_t k = 0; k <= m; ++k) {
      const int64_t a = k == m ? 0 : k, b = k == 0 ? 0 : m - k;
      const lane er = 0.5f * (z[2 * a] + z[2 * b]), ei = 0.5f * (z[2 * a + 1] - z[2 * b + 1]);
      const lane odd_re = 0.5f * (z[2 * a + 1] + z[2 * b + 1]);
      const lane odd_im = 0.5f * (z[2 * b] - z[2 * a]);
      const Complex w = roots_[k];
      const lane xr = er + odd_re * w.re - odd_im * w.im;
      const lane xi = ei + odd_re * w.im + odd_im * w.re;
      out[k] = xr * xr + xi * xi;
    }
  }

  // lags[l * kTile + i] = sum_n x_i[n] x_i[n + l] for l < max_lag (even n_fft only, n_fft >=
  // 2 * frame length - 1): the inverse real FFT of power_t, through an n_fft / 2-point forward
  // FFT of the conjugated half-length spectrum.
  void autocorrelation(const float* power_t, lane* data, lane* scratch, int64_t max_lag,
                       float* lags) const {
    const int64_t m = fft_.size();
    const lane* p = reinterpret_cast<const lane*>(power_t);
    for (int64_t k = 0; k < m; ++k) {  // conj(E + i w^-k D), E, D halves of P[k] +- P[m - k]
      const lane e = 0.5f * (p[k] + p[m - k]), d = 0.5f * (p[k] - p[m - k]);
      const Complex w = roots_[k];
      data[2 * k] = e + d * w.im;
      data[2 * k + 1] = -d * w.re;
    }
    const lane* z = fft_.forward(data, scratch);  // conj(z) / m: x[2n] + i x[2n + 1]
    const float scale = 1.f / static_cast<float>(m);
    lane* out = reinterpret_cast<lane*>(lags);
    for (int64_t l = 0; l < max_lag; ++l)
      out[l] = (l % 2 == 0 ? z[l] : -z[l]) * scale;
  }

 private:
  int64_t n_fft_;
  LaneFft fft_;
  std::vector<Complex> roots_;  // exp(-2 pi i k / n_fft), k <= n_fft / 2
};

// Per-thread buffers of one tile, vector-aligned: FFT ping-pong buffers, power spectra
// (n_freq, kTile) and the tile's output (channels, kTile).
struct TileBuffers {
  std::vector<lane> data, scratch, power, out;
  TileBuffers(const TileSpectrum& spectrum, int64_t channels)
      : data(2 * spectrum.fft().size()), scratch(2 * spectrum.fft().size()),
        power(spectrum.n_freq()), out(channels) {}
  float* power_t() { return reinterpret_cast<float*>(power.data()); }
  float* out_t() { return reinterpret_cast<float*>(out.data()); }
};

// log(|X| + floor) from |X|^2, in place (values a multiple of kWidth).
void log_magnitude_of_power(float* power_t, int64_t values, float floor) {
  for (int64_t k = 0; k < values; ++k) power_t[k] = std::sqrt(power_t[k]) + floor;
  for (int64_t k = 0; k < values; k += kWidth) store(power_t + k, vector_log(load(power_t + k)));
}

// |X|^power from |X|^2, in place.
void apply_power(float* power_t, int64_t values, float power) {
  if (power == 2.f) return;
  for (int64_t k = 0; k < values; ++k)
    power_t[k] = power == 1.f ? std::sqrt(power_t[k]) : std::pow(power_t[k], 0.5f * power);
}

// Every tile of kTile frames: framing, FFT and |X|^2 (buffers.power_t()), then
// finish(spectrum, buffers) turns them into the tile's output (channels, kTile) and returns it;
// it is stored into out (batch, channels, n_frames).
template <typename Finish>
void spectral_tiles(const Framing& framing, int64_t batch, int64_t n_fft, int64_t channels,
                    float* out, int threads, Finish finish) {
  const TileSpectrum spectrum(n_fft);
  const int64_t total = batch * framing.n_frames, tiles = (total + kTile - 1) / kTile;
#pragma omp parallel num_threads(threads)
  {
    TileBuffers buffers(spectrum, channels);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t g0 = t * kTile, count = std::min(kTile, total - g0);
      frame_tile(framing, g0, count, n_fft, buffers.data.data());
      spectrum.power(buffers.data.data(), buffers.scratch.data(), buffers.power_t());
      const float* tile = finish(spectrum, buffers);
      tile_store(tile, g0, count, channels, framing.n_frames, out);
    }
  }
}

}  // namespace

void melspectrogram(const Framing& framing, int64_t batch, int64_t n_fft,
                    const MelFilters& filters, float power, float log_multiplier, float amin,
                    float* out, int threads) {
  spectral_tiles(framing, batch, n_fft, filters.n_mels, out, threads,
                 [&](const TileSpectrum& spectrum, TileBuffers& buffers) {
                   apply_power(buffers.power_t(), spectrum.n_freq() * kTile, power);
                   tile_project(buffers.power_t(), filters, log_multiplier, amin, buffers.out_t());
                   return buffers.out_t();
                 });
}

void tempogram(const Framing& framing, int64_t batch, int64_t n_fft, int64_t max_lag,
               bool normalize, float* out, int threads) {
  spectral_tiles(framing, batch, n_fft, max_lag, out, threads,
                 [&](const TileSpectrum& spectrum, TileBuffers& buffers) {
                   lane* lags = buffers.out.data();
                   spectrum.autocorrelation(buffers.power_t(), buffers.data.data(),
                                            buffers.scratch.data(), max_lag, buffers.out_t());
                   if (normalize) {  // lag 0 is the frame's energy and its largest |value|
                     const lane energy = lags[0];
                     const lane scale = energy >= kTinyFloat ? 1.f / energy : lane{} + 1.f;
                     for (int64_t l = 0; l < max_lag; ++l) lags[l] *= scale;
                   }
                   return buffers.out_t();
                 });
}

void real_cepstrum(const Framing& framing, int64_t batch, int64_t n_fft, int64_t n_quefrencies,
                   float floor, float* out, int threads) {
  spectral_tiles(framing, batch, n_fft, n_quefrencies, out, threads,
                 [&](const TileSpectrum& spectrum, TileBuffers& buffers) {
                   log_magnitude_of_power(buffers.power_t(), spectrum.n_freq() * kTile, floor);
                   spectrum.autocorrelation(buffers.power_t(), buffers.data.data(),
                                            buffers.scratch.data(), n_quefrencies,
                                            buffers.out_t());
                   return buffers.out_t();
                 });
}

void log_magnitude(const Framing& framing, int64_t batch, int64_t n_fft, float floor, float* out,
                   int threads) {
  spectral_tiles(framing, batch, n_fft, n_fft / 2 + 1, out, threads,
                 [&](const TileSpectrum& spectrum, TileBuffers& buffers) {
                   log_magnitude_of_power(buffers.power_t(), spectrum.n_freq() * kTile, floor);
                   return buffers.power_t();
                 });
}

void ncms_modulation(const float* spectra, int64_t batch, int64_t rows, int64_t segments,
                     int64_t half, float std_floor, float* out, int threads) {
  const int64_t width = half + 1;
  const float frames = static_cast<float>(2 * half);
  std::vector<float> sign(half);  // (-1)^f for f = 1..half
  for (int64_t f = 0; f < half; ++f) sign[f] = f % 2 == 0 ? -1.f : 1.f;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> power(half), mean(half), scale(half);
    std::vector<double> sum(half);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < batch * segments; ++item) {
      const int64_t clip = item / segments, s = item % segments;
      float* block = out + item * rows * width;  // (rows, width) of this segment
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t q = 0; q < rows; ++q) {
        const float* h0 = spectra + ((clip * rows + q) * (segments + 1) + s) * 2 * half;
        const float* h1 = h0 + 2 * half;
        float total = 0.f;
        for (int64_t f = 0; f < half; ++f) {
          const float re = h0[f] + sign[f] * h1[f], im = h0[half + f] + sign[f] * h1[half + f];
          power[f] = re * re + im * im;
          total += power[f];
        }
        total = 2.f * total - power[half - 1];  // the Nyquist bin counts once
        const float inverse_std = 1.f / std::max(std::sqrt(total) / frames, std_floor);
        float* row = block + q * width;
        row[0] = 0.f;
        for (int64_t f = 0; f < half; ++f) {
          row[1 + f] = std::sqrt(power[f]) * inverse_std;
          sum[f] += row[1 + f];
        }
      }
      for (int64_t f = 0; f < half; ++f) mean[f] = static_cast<float>(sum[f] / rows);
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t q = 0; q < rows; ++q) {
        const float* row = block + q * width + 1;
        for (int64_t f = 0; f < half; ++f) {
          const float d = row[f] - mean[f];
          sum[f] += d * d;
        }
      }
      for (int64_t f = 0; f < half; ++f)
        scale[f] = 1.f / std::max(static_cast<float>(std::sqrt(sum[f] / rows)), std_floor);
      for (int64_t q = 0; q < rows; ++q) {
        float* row = block + q * width + 1;
        for (int64_t f = 0; f < half; ++f) row[f] = (row[f] - mean[f]) * scale[f];
      }
    }
  }
}

}  // namespace DLR_ISA
}  // namespace dlr
