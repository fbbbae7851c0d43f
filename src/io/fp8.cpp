#include "smoe/io/fp8.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace smoe {

namespace {

float decode(uint8_t b) {
  const int sign = b >> 7, exponent = (b >> 3) & 0xF, mantissa = b & 0x7;
  if (exponent == 0xF && mantissa == 0x7) return std::numeric_limits<float>::quiet_NaN();
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa) / 8.0f, -6)
                                        : std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
  return sign ? -magnitude : magnitude;
}

const std::array<float, 256>& table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> v{};
    for (int b = 0; b < 256; ++b) v[static_cast<size_t>(b)] = decode(static_cast<uint8_t>(b));
    return v;
  }();
  return t;
}

}  // namespace

float fp8_e4m3_to_float(uint8_t byte) { return table()[byte]; }

uint8_t float_to_fp8_e4m3(float value) {
  if (std::isnan(value)) return 0x7F;
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const float a = std::fabs(value);
  if (a >= kFp8E4m3Max) return sign | 0x7E;
  // Codes 0x00..0x7E are the non-negative finite values in increasing order.
  const auto& t = table();
  const float* first = t.data();
  const float* last = t.data() + 0x7F;
  const float* hi = std::lower_bound(first, last, a);  // first value >= a; a < 448 so hi < last
  if (*hi == a || hi == first) return sign | static_cast<uint8_t>(hi - first);
  const float* lo = hi - 1;
  const float below = a - *lo, above = *hi - a;
  uint8_t code;
  if (below < above) code = static_cast<uint8_t>(lo - first);
  else if (above < below) code = static_cast<uint8_t>(hi - first);
  else code = static_cast<uint8_t>(((lo - first) % 2 == 0) ? lo - first : hi - first);
  return sign | code;
}

int64_t dequantize_fp8_blocks(const uint8_t* q, int64_t rows, int64_t cols, const float* scale, int64_t block_rows,
                              int64_t block_cols, float* out) {
  const auto& t = table();
  const int64_t scale_cols = (cols + block_cols - 1) / block_cols;
  int64_t first_nan = -1;
  for (int64_t i = 0; i < rows; ++i) {
    const float* s = scale + (i / block_rows) * scale_cols;
    const uint8_t* qi = q + i * cols;
    float* oi = out + i * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const uint8_t b = qi[j];
      if ((b & 0x7F) == 0x7F && first_nan < 0) first_nan = i * cols + j;
      oi[j] = t[b] * s[j / block_cols];
    }
  }
  return first_nan;
}

void quantize_fp8_blocks(const float* w, int64_t rows, int64_t cols, int64_t block_rows, int64_t block_cols,
                         uint8_t* q, float* scale) {
  const int64_t scale_rows = (rows + block_rows - 1) / block_rows, scale_cols = (cols + block_cols - 1) / block_cols;
  for (int64_t bi = 0; bi < scale_rows; ++bi) {
    for (int64_t bj = 0; bj < scale_cols; ++bj) {
      const int64_t i0 = bi * block_rows, i1 = std::min(rows, i0 + block_rows);
      const int64_t j0 = bj * block_cols, j1 = std::min(cols, j0 + block_cols);
      float amax = 0;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) amax = std::max(amax, std::fabs(w[i * cols + j]));
      const float s = amax > 0 ? amax / kFp8E4m3Max : 1.0f;
      scale[bi * scale_cols + bj] = s;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) q[i * cols + j] = float_to_fp8_e4m3(w[i * cols + j] / s);
    }
  }
}

}  // namespace smoe
