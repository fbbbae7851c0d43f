#include "smoe/model/gemm.h"

#include <immintrin.h>

#include <vector>

// The kernels are compiled for AVX2 + FMA by attribute (not for the whole file or
// project), so the binary still starts on older CPUs; `available()` guards them.
// Nothing from the standard library is instantiated under the attribute (the
// scratch buffer's vector lives in a plain function).
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

// yt[r, t] (+)= sum over kc of panel[:, t] w[r, :] for rows r < nr and the
// panel's 16 rows t (vecs = 2), or its first 8 (vecs = 1): y transposed, so that
// each accumulator is stored as one vector. Every loop over the accumulators is
// unrolled so that they stay in registers.
template <int nr, int vecs>
SMOE_AVX2 inline void tile(const float* panel, const float* w, int64_t ldw, int64_t kc, float* yt, int64_t ldyt,
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
#pragma GCC unroll 6
  for (int r = 0; r < nr; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < vecs; ++v) {
      float* out = yt + r * ldyt + v * 8;
      _mm256_storeu_ps(out, add ? _mm256_add_ps(_mm256_loadu_ps(out), acc[r][v]) : acc[r][v]);
    }
}

template <int vecs>
SMOE_AVX2 inline void tile_columns(int nr, const float* panel, const float* w, int64_t ldw, int64_t kc, float* yt,
                                   int64_t ldyt, bool add) {
  static_assert(kColumnBlock == 6, "the cases below are written for six columns");
  switch (nr) {
    case 6: tile<6, vecs>(panel, w, ldw, kc, yt, ldyt, add); break;
    case 5: tile<5, vecs>(panel, w, ldw, kc, yt, ldyt, add); break;
    case 4: tile<4, vecs>(panel, w, ldw, kc, yt, ldyt, add); break;
    case 3: tile<3, vecs>(panel, w, ldw, kc, yt, ldyt, add); break;
    case 2: tile<2, vecs>(panel, w, ldw, kc, yt, ldyt, add); break;
    default: tile<1, vecs>(panel, w, ldw, kc, yt, ldyt, add); break;
  }
}

// out[j * ldo + i] = in[i * ldi + j] for an 8 x 8 block.
SMOE_AVX2 inline void transpose8(const float* in, int64_t ldi, float* out, int64_t ldo) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(in + i * ldi);
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(out + i * ldo, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(out + (i + 4) * ldo, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

SMOE_AVX2 void run(const float* packed, int64_t m, int64_t k, const float* w, int64_t ldw, float* y, int64_t rs,
                   int64_t cs, int64_t n_begin, int64_t n_end, float* yt) {
  const int64_t panels = (m + kPanelRows - 1) / kPanelRows;
  const int64_t ldyt = panels * kPanelRows;
  for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
    const int64_t kc = min64(kChunk, k - k0);
    const int64_t group = max64(kColumnBlock, kGroupBytes / (kc * 4) / kColumnBlock * kColumnBlock);
    for (int64_t g = n_begin; g < n_end; g += group) {
      const int64_t g1 = min64(n_end, g + group);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t rows = min64(kPanelRows, m - p * kPanelRows);
        const float* panel = packed + p * k * kPanelRows + k0 * kPanelRows;
        for (int64_t n = g; n < g1; n += kColumnBlock) {
          const int nr = static_cast<int>(min64(kColumnBlock, g1 - n));
          float* out = yt + (n - n_begin) * ldyt + p * kPanelRows;
          if (rows > 8)
            tile_columns<2>(nr, panel, w + n * ldw + k0, ldw, kc, out, ldyt, k0 > 0);
          else
            tile_columns<1>(nr, panel, w + n * ldw + k0, ldw, kc, out, ldyt, k0 > 0);
        }
      }
    }
  }
  // Into y's layout: a column at a time where y is column-major, else in 8 x 8
  // blocks transposed in registers.
  if (rs == 1) {
    for (int64_t n = n_begin; n < n_end; ++n) {
      const float* column = yt + (n - n_begin) * ldyt;
      float* out = y + n * cs;
      for (int64_t t = 0; t < m; ++t) out[t] = column[t];
    }
    return;
  }
  const int64_t m8 = cs == 1 ? m / 8 * 8 : 0, n8 = cs == 1 ? n_begin + (n_end - n_begin) / 8 * 8 : n_begin;
  for (int64_t t = 0; t < m8; t += 8)
    for (int64_t n = n_begin; n < n8; n += 8) transpose8(yt + (n - n_begin) * ldyt + t, ldyt, y + t * rs + n, rs);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t n = t < m8 ? n8 : n_begin; n < n_end; ++n) y[t * rs + n * cs] = yt[(n - n_begin) * ldyt + t];
}

// Each thread's transposed result, reused from call to call.
float* scratch(int64_t floats) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < floats) buffer.resize(static_cast<size_t>(floats));
  return buffer.data();
}

// A row-major panel of 16 full rows: 8 x 8 blocks through registers, the last
// k % 8 columns one by one.
SMOE_AVX2 void pack_full_panel(const float* x, int64_t ldx, int64_t k, float* panel) {
  const int64_t k8 = k / 8 * 8;
  for (int64_t t = 0; t < kPanelRows; t += 8)
    for (int64_t i = 0; i < k8; i += 8) transpose8(x + t * ldx + i, ldx, panel + i * kPanelRows + t, kPanelRows);
  for (int64_t t = 0; t < kPanelRows; ++t)
    for (int64_t i = k8; i < k; ++i) panel[i * kPanelRows + t] = x[t * ldx + i];
}

}  // namespace

int64_t packed_size(int64_t m, int64_t k) { return (m + kPanelRows - 1) / kPanelRows * kPanelRows * k; }

void pack_rows(const float* x, int64_t row_stride, int64_t col_stride, int64_t m, int64_t k, float* out,
               int64_t panel_begin, int64_t panel_end) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    float* panel = out + p * k * kPanelRows;
    const int64_t rows = min64(kPanelRows, m - p * kPanelRows);
    const float* xp = x + p * kPanelRows * row_stride;
    if (row_stride == 1) {  // column-major: 16 rows of a column lie side by side
      for (int64_t i = 0; i < k; ++i) {
        const float* column = xp + i * col_stride;
        float* o = panel + i * kPanelRows;
        for (int64_t t = 0; t < rows; ++t) o[t] = column[t];
        for (int64_t t = rows; t < kPanelRows; ++t) o[t] = 0.0f;
      }
      continue;
    }
    if (col_stride == 1 && rows == kPanelRows) {  // row-major, full panel: 8 x 8 blocks
      pack_full_panel(xp, row_stride, k, panel);
      continue;
    }
    for (int64_t t = 0; t < kPanelRows; ++t) {
      if (t < rows) {
        const float* xr = xp + t * row_stride;
        for (int64_t i = 0; i < k; ++i) panel[i * kPanelRows + t] = xr[i * col_stride];
      } else {
        for (int64_t i = 0; i < k; ++i) panel[i * kPanelRows + t] = 0.0f;
      }
    }
  }
}

void xwt(const float* packed, int64_t m, int64_t k, const float* w, int64_t ldw, float* y, int64_t row_stride,
         int64_t col_stride, int64_t n_begin, int64_t n_end) {
  if (n_end <= n_begin || m == 0) return;
  if (k == 0) {
    for (int64_t t = 0; t < m; ++t)
      for (int64_t n = n_begin; n < n_end; ++n) y[t * row_stride + n * col_stride] = 0.0f;
    return;
  }
  // Columns in slabs whose transposed result stays within 4 MB (a slab changes
  // no result, only the order in which columns are done).
  const int64_t rows = packed_size(m, 1);
  const int64_t slab = max64(kColumnBlock, (int64_t{1} << 20) / rows / kColumnBlock * kColumnBlock);
  float* yt = scratch(min64(slab, n_end - n_begin) * rows);
  for (int64_t n = n_begin; n < n_end; n += slab) run(packed, m, k, w, ldw, y, row_stride, col_stride, n, min64(n_end, n + slab), yt);
}

}  // namespace smoe::gemm
