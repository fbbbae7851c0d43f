// FP8 E4M3FN decoding, rounding and 128 x 128 block (de)quantisation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "smoe/io/fp8.h"

namespace smoe {
namespace {

TEST(Fp8, DecodesTheE4m3fnTable) {
  EXPECT_EQ(fp8_e4m3_to_float(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_float(0x80)));
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_float(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_float(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x39), 1.125f);
  EXPECT_EQ(fp8_e4m3_to_float(0x7E), 448.0f);  // no infinities: the top code below NaN is finite
  EXPECT_EQ(fp8_e4m3_to_float(0xFE), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0xB8), -1.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0xFF)));
  for (int b = 0; b < 0x7E; ++b) EXPECT_LT(fp8_e4m3_to_float(b), fp8_e4m3_to_float(b + 1)) << b;
}

TEST(Fp8, RoundsToNearestEvenAndSaturates) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) == 0x7F) continue;
    EXPECT_EQ(float_to_fp8_e4m3(fp8_e4m3_to_float(static_cast<uint8_t>(b))), b) << b;  // every value round-trips
  }
  EXPECT_EQ(float_to_fp8_e4m3(1.0625f), 0x38);   // halfway between 1 (0x38) and 1.125 (0x39): even code
  EXPECT_EQ(float_to_fp8_e4m3(1.1875f), 0x3A);   // halfway between 1.125 (0x39) and 1.25 (0x3A): even code
  EXPECT_EQ(float_to_fp8_e4m3(1.07f), 0x39);
  EXPECT_EQ(float_to_fp8_e4m3(-1.07f), 0xB9);
  EXPECT_EQ(float_to_fp8_e4m3(1000.0f), 0x7E);
  EXPECT_EQ(float_to_fp8_e4m3(-1e30f), 0xFE);
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.0f, -11)), 0x00);  // below half the smallest subnormal
  EXPECT_EQ(float_to_fp8_e4m3(std::nanf("")), 0x7F);
}

TEST(Fp8, BlockScalesCoverRaggedEdges) {
  // 5 x 7 in blocks of 2 x 3: scales [3, 3], the last row and column of blocks ragged.
  const int64_t rows = 5, cols = 7, br = 2, bc = 3;
  std::vector<float> w(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) w[i] = std::sin(0.7f * i) * (1 + i);
  std::vector<uint8_t> q(w.size());
  std::vector<float> scale(9), back(w.size());
  quantize_fp8_blocks(w.data(), rows, cols, br, bc, q.data(), scale.data());
  EXPECT_EQ(dequantize_fp8_blocks(q.data(), rows, cols, scale.data(), br, bc, back.data()), -1);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const float s = scale[(i / br) * 3 + j / bc];
      EXPECT_EQ(back[i * cols + j], fp8_e4m3_to_float(q[i * cols + j]) * s);
      // Three mantissa bits: within 1/16 relative of the value, or a subnormal step.
      EXPECT_NEAR(back[i * cols + j], w[i * cols + j], std::fabs(w[i * cols + j]) / 16 + s * std::ldexp(1.0f, -10));
    }
  }
  // Each block's largest magnitude maps to 448 exactly.
  float amax = 0;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) amax = std::max(amax, std::fabs(w[i * cols + j]));
  EXPECT_FLOAT_EQ(scale[0], amax / 448.0f);
  q[12] = 0xFF;
  EXPECT_EQ(dequantize_fp8_blocks(q.data(), rows, cols, scale.data(), br, bc, back.data()), 12);
}

}  // namespace
}  // namespace smoe
