#include "smoe/model/gemm.h"

#include <immintrin.h>

// The kernels are compiled for AVX2 + FMA by attribute (not for the whole file or
// project), so the binary still starts on older CPUs; `available()` guards them.
// Nothing from the standard library is instantiated under the attribute.
#define SMOE_AVX2 __attribute__((target("avx2,fma")))

namespace smoe::gemm {

bool available() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

namespace {

// Weight rows of one group stay in L2 while every panel of x passes them.
constexpr int64_t kGroupBytes = 256 * 1024;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// y[t, r] (+)= sum over kc of panel[:, t] w[r, :] for rows r < nr and the first
// `rows` of the panel's 16 (vecs = 2), or of its first 8 (vecs = 1). Every loop
// over the accumulators is unrolled so that they stay in registers.
template <int nr, int vecs>
SMOE_AVX2 inline void tile(const float* panel, const float* w, int64_t ldw, int64_t kc, float* y, int64_t ldy, int rows,
                           bool add) {
  __m256 acc[nr][vecs];
#pragma GCC unroll 6
  for (int r = 0; r < nr; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < vecs; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m256 x[vecs];
#pragma GCC unroll 2
    for (int v = 0; v < vecs; ++v) x[v] = _mm256_load_ps(panel + k * kPanelRows + v * 8);
#pragma GCC unroll 6
    for (int r = 0; r < nr; ++r) {
      const __m256 a = _mm256_broadcast_ss(w + r * ldw + k);
#pragma GCC unroll 2
      for (int v = 0; v < vecs; ++v) acc[r][v] = _mm256_fmadd_ps(a, x[v], acc[r][v]);
    }
  }
  alignas(32) float out[nr][vecs * 8];
#pragma GCC unroll 6
  for (int r = 0; r < nr; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < vecs; ++v) _mm256_store_ps(out[r] + v * 8, acc[r][v]);
  for (int t = 0; t < rows; ++t)
    for (int r = 0; r < nr; ++r) y[t * ldy + r] = add ? y[t * ldy + r] + out[r][t] : out[r][t];
}

template <int vecs>
SMOE_AVX2 inline void tile_columns(int nr, const float* panel, const float* w, int64_t ldw, int64_t kc, float* y,
                                   int64_t ldy, int rows, bool add) {
  static_assert(kColumnBlock == 6, "the cases below are written for six columns");
  switch (nr) {
    case 6: tile<6, vecs>(panel, w, ldw, kc, y, ldy, rows, add); break;
    case 5: tile<5, vecs>(panel, w, ldw, kc, y, ldy, rows, add); break;
    case 4: tile<4, vecs>(panel, w, ldw, kc, y, ldy, rows, add); break;
    case 3: tile<3, vecs>(panel, w, ldw, kc, y, ldy, rows, add); break;
    case 2: tile<2, vecs>(panel, w, ldw, kc, y, ldy, rows, add); break;
    default: tile<1, vecs>(panel, w, ldw, kc, y, ldy, rows, add); break;
  }
}

SMOE_AVX2 void run(const float* packed, int64_t m, int64_t k, const float* w, int64_t ldw, float* y, int64_t ldy,
                   int64_t n_begin, int64_t n_end) {
  const int64_t panels = (m + kPanelRows - 1) / kPanelRows;
  for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
    const int64_t kc = min64(kChunk, k - k0);
    const int64_t group = max64(kColumnBlock, kGroupBytes / (kc * 4) / kColumnBlock * kColumnBlock);
    for (int64_t g = n_begin; g < n_end; g += group) {
      const int64_t g1 = min64(n_end, g + group);
      for (int64_t p = 0; p < panels; ++p) {
        const int rows = static_cast<int>(min64(kPanelRows, m - p * kPanelRows));
        const float* panel = packed + p * k * kPanelRows + k0 * kPanelRows;
        float* yp = y + p * kPanelRows * ldy;
        for (int64_t n = g; n < g1; n += kColumnBlock) {
          const int nr = static_cast<int>(min64(kColumnBlock, g1 - n));
          if (rows > 8)
            tile_columns<2>(nr, panel, w + n * ldw + k0, ldw, kc, yp + n, ldy, rows, k0 > 0);
          else
            tile_columns<1>(nr, panel, w + n * ldw + k0, ldw, kc, yp + n, ldy, rows, k0 > 0);
        }
      }
    }
  }
}

}  // namespace

int64_t packed_size(int64_t m, int64_t k) { return (m + kPanelRows - 1) / kPanelRows * kPanelRows * k; }

void pack_rows(const float* x, int64_t ldx, int64_t m, int64_t k, float* out, int64_t panel_begin,
               int64_t panel_end) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    float* panel = out + p * k * kPanelRows;
    for (int64_t t = 0; t < kPanelRows; ++t) {
      const int64_t row = p * kPanelRows + t;
      if (row < m) {
        const float* xr = x + row * ldx;
        for (int64_t i = 0; i < k; ++i) panel[i * kPanelRows + t] = xr[i];
      } else {
        for (int64_t i = 0; i < k; ++i) panel[i * kPanelRows + t] = 0.0f;
      }
    }
  }
}

void xwt(const float* packed, int64_t m, int64_t k, const float* w, int64_t ldw, float* y, int64_t ldy,
         int64_t n_begin, int64_t n_end) {
  run(packed, m, k, w, ldw, y, ldy, n_begin, n_end);
}

}  // namespace smoe::gemm
