#include "smoe/io/mxfp4.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace smoe {

namespace {

// E2M1 magnitudes of codes 0..7, in increasing order.
constexpr std::array<float, 8> kMagnitudes = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// The nearest magnitude code of a (0 <= a), ties to the even code, saturating at 6.
uint8_t nearest_code(float a) {
  if (a >= kMxfp4Max) return 7;
  uint8_t hi = 1;
  while (kMagnitudes[hi] < a) ++hi;
  const uint8_t lo = hi - 1;
  const float d_lo = a - kMagnitudes[lo], d_hi = kMagnitudes[hi] - a;
  if (d_lo < d_hi) return lo;
  if (d_hi < d_lo) return hi;
  return lo % 2 == 0 ? lo : hi;
}

}  // namespace

float e2m1_to_float(uint8_t nibble) {
  const float m = kMagnitudes[nibble & 7];
  return nibble & 8 ? -m : m;
}

void dequantize_mxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t groups, float* out) {
  for (int64_t g = 0; g < rows * groups; ++g) {
    const float scale = std::ldexp(1.0f, static_cast<int>(scales[g]) - 127);
    const uint8_t* b = blocks + g * 16;
    float* o = out + g * kMxfp4Group;
    for (int j = 0; j < 16; ++j) {
      o[2 * j] = e2m1_to_float(b[j] & 0xF) * scale;
      o[2 * j + 1] = e2m1_to_float(b[j] >> 4) * scale;
    }
  }
}

void quantize_mxfp4(const float* w, int64_t rows, int64_t groups, uint8_t* blocks, uint8_t* scales) {
  for (int64_t g = 0; g < rows * groups; ++g) {
    const float* v = w + g * kMxfp4Group;
    float amax = 0;
    for (int64_t i = 0; i < kMxfp4Group; ++i) amax = std::max(amax, std::fabs(v[i]));
    int exponent = 0;  // scale 2^exponent
    if (amax > 0) {
      exponent = static_cast<int>(std::ceil(std::log2(amax / kMxfp4Max)));
      while (std::ldexp(kMxfp4Max, exponent - 1) >= amax) --exponent;  // log2 may round either way
      while (std::ldexp(kMxfp4Max, exponent) < amax) ++exponent;
    }
    exponent = std::clamp(exponent, -127, 127);
    scales[g] = static_cast<uint8_t>(exponent + 127);
    uint8_t* b = blocks + g * 16;
    for (int j = 0; j < 16; ++j) {
      uint8_t code[2];
      for (int h = 0; h < 2; ++h) {
        const float x = std::ldexp(v[2 * j + h], -exponent);
        code[h] = static_cast<uint8_t>(nearest_code(std::fabs(x)) | (std::signbit(x) ? 8 : 0));
      }
      b[j] = static_cast<uint8_t>(code[0] | (code[1] << 4));
    }
  }
}

}  // namespace smoe
