// Entry points of the CPU mel spectrogram, tempogram, real cepstrum, log magnitude and the
// NCMS's modulation step (spectral_cpu_kernel.cpp), one set per
// instruction set. Frames are global frame indices g = clip * n_frames + frame over the batch;
// out (batch, channels, n_frames) float32.
#pragma once

#include <cstdint>
#include <vector>

namespace dlr {

// Values of frames beyond a clip's ends (numpy's pad modes): constant zeros, reflection about
// the end samples, repetition of the end samples.
enum class PadMode : int { kZeros = 0, kReflect = 1, kEdge = 2 };

// The mel matrix without its zeros: filter m weighs bins [starts[m], starts[m] + lengths[m])
// by weights[offsets[m] ...].
struct MelFilters {
  int64_t n_mels;
  const int64_t* starts;
  const int64_t* lengths;
  const int64_t* offsets;
  const float* weights;
};

// Frame g of a signal (batch, signal_length): signal[clip, offset + frame * hop + j] * window[j]
// for j < span, positions outside the clip padded by pad_mode.
struct Framing {
  const float* signal;
  int64_t signal_length;
  int64_t n_frames;
  int64_t hop;
  int64_t offset;
  PadMode pad_mode;
  const float* window;
  int64_t span;
};

#define DLR_DECLARE_SPECTRAL_KERNELS(isa)                                                      \
  namespace isa {                                                                             \
  /* out[clip, m, frame] = log_multiplier * log10(max(amin, sum_f mel[m, f] |X[f]|^power)) */ \
  /* (no log when log_multiplier is 0), X the n_fft-point DFT of the frame */                 \
  void melspectrogram(const Framing& framing, int64_t batch, int64_t n_fft,                   \
                      const MelFilters& filters, float power, float log_multiplier,           \
                      float amin, float* out, int threads);                                   \
  /* out[clip, l, frame] = sum_n x[n] x[n + l] for l < max_lag (divided by the l = 0 value */ \
  /* when normalize and it is at least float32's tiny); even n_fft >= 2 span - 1 */           \
  void tempogram(const Framing& framing, int64_t batch, int64_t n_fft, int64_t max_lag,        \
                 bool normalize, float* out, int threads);                                    \
  /* out[clip, q, frame] = irfft(log(|X| + floor), n_fft)[q] for q < n_quefrencies */         \
  void real_cepstrum(const Framing& framing, int64_t batch, int64_t n_fft,                    \
                     int64_t n_quefrencies, float floor, float* out, int threads);            \
  /* out[clip, k, frame] = log(|X[k]| + floor) for k <= n_fft / 2 */                          \
  void log_magnitude(const Framing& framing, int64_t batch, int64_t n_fft, float floor,       \
                     float* out, int threads);                                                \
  /* The NCMS after its half-segment DFTs (ops/ncms.py, ncms_fused): spectra (batch, rows, */ \
  /* segments + 1, 2 half) the bins f = 1..half (real parts, then imaginary) of each half  */ \
  /* segment; out (batch, segments, rows, half + 1): per segment the magnitudes of         */ \
  /* H0 + (-1)^f H1 over their row's std (Parseval, floored), z-scored over the rows (the  */ \
  /* std floored), column 0 zero */                                                         \
  void ncms_modulation(const float* spectra, int64_t batch, int64_t rows, int64_t segments,   \
                       int64_t half, float std_floor, float* out, int threads);               \
  }

DLR_DECLARE_SPECTRAL_KERNELS(generic)
#if defined(DLR_HAVE_X86_VARIANTS)
DLR_DECLARE_SPECTRAL_KERNELS(avx2)
DLR_DECLARE_SPECTRAL_KERNELS(avx512)
#endif

#undef DLR_DECLARE_SPECTRAL_KERNELS

}  // namespace dlr
