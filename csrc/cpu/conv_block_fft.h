// The conv block's FFT algorithm (ConvAlgorithm::kFft, float32): a one-row kernel (1 x K) on a
// one-channel input at column stride 1, the shape of long temporal filters on a spectrogram
// (Pons et al.'s 1 x 60). Each input row is transformed once by a real FFT of
// row_fft_points(in_cols) points, and each output channel's row is the inverse real FFT of its
// product with the channel's transformed kernel: per output about 5 log2(M) + 8 flops whatever
// K, where the direct kernel spends 2 K (120 for K = 60). The correlation is circular over
// M >= in_cols points, so the conv_cols valid outputs never wrap. Which blocks take it: the
// cost model of runtime/conv_block.py's fft_pays.
//
// Lanes are clips: kLanes clips' same row are transformed together (lane_fft.h), so pooling over
// rows and columns is plain vector max and nothing crosses lanes. A work item is (group of
// kLanes clips, pooled output row, its output channels, or ranges of them where the items would
// not split evenly over the threads); its pooled row (channels x out_cols lanes) stays in the thread's buffer
// until act(max + bias) is scattered to out.
//
// Packed weights w: (out_channels, M / 2 + 1) complex float pairs, conj(DFT_M(kernel)) / M.
// A non-finite input spreads over its whole row here (the direct kernel keeps it to the
// windows that touch it): the caller sends such inputs to the direct kernel.
//
// Included inside dlr::DLR_ISA's anonymous namespace after lane_fft.h and conv_block_driver.h
// (its nan_max and activate, on lanes).
#pragma once

// Points of the row transform for rows of in_cols values: the smallest power of two >= in_cols
// (and >= 2).
inline int64_t row_fft_points(int64_t in_cols) {
  int64_t size = 2;
  while (size < in_cols) size *= 2;
  return size;
}

constexpr int64_t kFftMaxCols = 4096;  // a row's transform buffers (2 x 256 KB) stay in L2
constexpr int64_t kFftChannelChunk = 8;  // output channels per work item, where items are split

inline bool supports_fft(const ConvBlockGeometry& geo) {
  return conv_block_shape_ok(geo) && geo.in_channels == 1 && geo.kernel_rows == 1 &&
         geo.stride_cols == 1 && geo.in_cols <= kFftMaxCols;
}

class FftRowConv {
 public:
  explicit FftRowConv(int64_t in_cols) : m_(row_fft_points(in_cols) / 2), fft_(m_) {
    for (int64_t k = 0; k <= m_; ++k) roots_.push_back(unit_root(k, 2 * m_));
  }

  int64_t half() const { return m_; }

  // X[k] (xr, xi: m + 1 lanes) of the real rows in data (data[j]: column j, 2 m lanes);
  // data and scratch are overwritten.
  void spectrum(lane* data, lane* scratch, lane* xr, lane* xi) const {
    const lane* z = fft_.forward(data, scratch);
    for (int64_t k = 0; k <= m_; ++k) {  // X[k] = E + w^k O, as TileSpectrum::power
      const int64_t a = k == m_ ? 0 : k, b = k == 0 ? 0 : m_ - k;
      const lane er = 0.5f * (z[2 * a] + z[2 * b]), ei = 0.5f * (z[2 * a + 1] - z[2 * b + 1]);
      const lane odd_re = 0.5f * (z[2 * a + 1] + z[2 * b + 1]);
      const lane odd_im = 0.5f * (z[2 * b] - z[2 * a]);
      const Complex w = roots_[k];
      xr[k] = er + odd_re * w.re - odd_im * w.im;
      xi[k] = ei + odd_re * w.im + odd_im * w.re;
    }
  }

  // The inverse real FFT of Y = X * wf (wf: m + 1 packed weights): returns z with output t at
  // z[t] (t even) or -z[t] (t odd), t < 2 m. An m-point forward FFT of conj(U + i V), U and V
  // the spectra of the even and odd outputs (the 1 / M is in wf); bins k and m - k share their
  // products and rotations (cos and sin of m - k are -cos and sin of k).
  const lane* correlate(const lane* xr, const lane* xi, const Complex* wf, lane* data,
                        lane* scratch) const {
    for (int64_t k = 0; 2 * k <= m_; ++k) {
      const int64_t b = m_ - k;
      const lane ar = xr[k] * wf[k].re - xi[k] * wf[k].im;
      const lane ai = xr[k] * wf[k].im + xi[k] * wf[k].re;
      const lane br = xr[b] * wf[b].re - xi[b] * wf[b].im;
      const lane bi = xr[b] * wf[b].im + xi[b] * wf[b].re;
      const lane ur = ar + br, ui = ai - bi, dr = ar - br, di = ai + bi;
      const float c = roots_[k].re, s = -roots_[k].im;  // exp(+2 pi i k / M)
      const lane vr = dr * c - di * s, vi = dr * s + di * c;
      data[2 * k] = ur - vi;
      data[2 * k + 1] = -(ui + vr);
      if (b < m_ && b != k) {
        data[2 * b] = ur + vi;
        data[2 * b + 1] = ui - vr;
      }
    }
    return fft_.forward(data, scratch);
  }

 private:
  int64_t m_;
  LaneFft fft_;
  std::vector<Complex> roots_;  // exp(-2 pi i k / M), k <= m
};

// Columns [0, in_cols) of row `row` of the clips in lanes [0, count) into data[0, in_cols);
// data[in_cols, 2 m) and the unused lanes are zero.
inline void load_rows(const float* x, const ConvBlockGeometry& geo, int64_t clip0, int64_t count,
                      int64_t row, int64_t points, lane* data) {
  std::fill(data + geo.in_cols, data + points, lane{});
  lane rows[kLanes];
  for (int64_t j0 = 0; j0 < geo.in_cols; j0 += kLanes) {
    const int64_t width = std::min<int64_t>(kLanes, geo.in_cols - j0);
    for (int64_t i = 0; i < kLanes; ++i) {
      rows[i] = lane{};
      if (i >= count) continue;
      const float* p = x + (clip0 + i) * geo.in_batch_stride + row * geo.in_row_stride + j0;
      if (width == kLanes)
        rows[i] = *reinterpret_cast<const lane_unaligned*>(p);
      else
        for (int64_t j = 0; j < width; ++j) rows[i][j] = p[j];
    }
    transpose(rows);
    for (int64_t j = 0; j < width; ++j) data[j0 + j] = rows[j];
  }
}

void run_fft(const float* x, const float* w, const float* bias, float* out,
             const ConvBlockGeometry& geo, int threads) {
  using conv_block_detail::activate;
  using conv_block_detail::nan_max;
  const FftRowConv conv(geo.in_cols);
  const int64_t m = conv.half(), out_rows = geo.out_rows(), out_cols = geo.out_cols();
  const int64_t pc = geo.pool_cols, groups = (geo.batch + kLanes - 1) / kLanes;
  // all channels per item (each row transformed once) where the items split evenly over the
  // threads; else ranges of channels, more items to balance (each range transforms its rows)
  const int64_t chunk =
      groups * out_rows % std::max(threads, 1) == 0 ? geo.out_channels : kFftChannelChunk;
  const int64_t chunks = (geo.out_channels + chunk - 1) / chunk;
  const Complex* weights = reinterpret_cast<const Complex*>(w);
#pragma omp parallel num_threads(threads)
  {
    std::vector<lane> data(2 * m), scratch(2 * m), xr(m + 1), xi(m + 1);
    std::vector<lane> pooled(std::min(chunk, geo.out_channels) * out_cols);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < groups * out_rows * chunks; ++item) {
      const int64_t group = item / (out_rows * chunks), orow = item / chunks % out_rows;
      const int64_t c0 = item % chunks * chunk;
      const int64_t channels = std::min(chunk, geo.out_channels - c0);
      const int64_t clip0 = group * kLanes, count = std::min<int64_t>(kLanes, geo.batch - clip0);
      for (int64_t q = 0; q < geo.pool_rows; ++q) {
        load_rows(x, geo, clip0, count, orow * geo.pool_rows + q, 2 * m, data.data());
        conv.spectrum(data.data(), scratch.data(), xr.data(), xi.data());
        for (int64_t c = 0; c < channels; ++c) {
          const lane* z = conv.correlate(xr.data(), xi.data(), weights + (c0 + c) * (m + 1),
                                         data.data(), scratch.data());
          lane* dst = pooled.data() + c * out_cols;
          for (int64_t t = 0; t < out_cols; ++t) {
            lane v = (t * pc) % 2 == 0 ? z[t * pc] : -z[t * pc];
            for (int64_t p = 1; p < pc; ++p) {
              const int64_t col = t * pc + p;
              v = nan_max(v, col % 2 == 0 ? z[col] : -z[col]);
            }
            dst[t] = q == 0 ? v : nan_max(dst[t], v);
          }
        }
      }
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t t = 0; t < out_cols; ++t) {
          const lane v = activate(pooled[c * out_cols + t] + bias[c0 + c], geo.activation, kLanes);
          float* dst = out + orow * geo.out_row_stride + t * geo.out_col_stride + c0 + c;
          for (int64_t i = 0; i < count; ++i) dst[(clip0 + i) * geo.out_batch_stride] = v[i];
        }
    }
  }
}
