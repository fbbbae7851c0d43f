// MXFP4: the E2M1 table, the nibble order, E8M0 scales, and quantisation that
// round-trips every representable group and clips nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "smoe/io/mxfp4.h"

namespace smoe {
namespace {

TEST(Mxfp4, DecodesTheE2m1Table) {
  const float want[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (uint8_t n = 0; n < 16; ++n) EXPECT_EQ(e2m1_to_float(n), want[n]) << int(n);
  EXPECT_TRUE(std::signbit(e2m1_to_float(8)));
}

TEST(Mxfp4, LowNibbleIsTheEvenElementAndTheScaleIsAPowerOfTwo) {
  std::vector<uint8_t> blocks(16, 0), scales = {129};  // 2^2
  blocks[0] = 0x72;   // element 0: code 2 (1.0), element 1: code 7 (6.0)
  blocks[15] = 0x9F;  // element 30: code 15 (-6), element 31: code 9 (-0.5)
  std::vector<float> out(32);
  dequantize_mxfp4(blocks.data(), scales.data(), 1, 1, out.data());
  EXPECT_EQ(out[0], 4.0f);
  EXPECT_EQ(out[1], 24.0f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[30], -24.0f);
  EXPECT_EQ(out[31], -2.0f);
  scales[0] = 120;  // 2^-7
  dequantize_mxfp4(blocks.data(), scales.data(), 1, 1, out.data());
  EXPECT_EQ(out[1], 6.0f / 128);
}

TEST(Mxfp4, QuantisationRoundTripsRepresentableGroupsAndClipsNothing) {
  // Two rows of two groups: every code, at several scales.
  std::vector<uint8_t> blocks(4 * 16), scales = {127, 130, 100, 150};
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<uint8_t>(i * 37 + 7);
  for (size_t g = 0; g < 4; ++g) blocks[g * 16] = 0x07;  // a 6 in every group, so its scale is the tightest
  std::vector<float> w(4 * 32);
  dequantize_mxfp4(blocks.data(), scales.data(), 2, 2, w.data());
  std::vector<uint8_t> b2(blocks.size()), s2(4);
  quantize_mxfp4(w.data(), 2, 2, b2.data(), s2.data());
  std::vector<float> w2(w.size());
  dequantize_mxfp4(b2.data(), s2.data(), 2, 2, w2.data());
  EXPECT_EQ(s2, scales);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(w2[i], w[i]) << i;

  // A group whose largest magnitude is 7: scale 2 (6 * 1 < 7 <= 6 * 2), 7 -> 8 (nearest of 6, 8).
  std::vector<float> v(32, 0.0f);
  v[0] = 7.0f;
  v[1] = -1.0f;  // -0.5 at scale 2: code 9
  v[2] = 0.5f;   // 0.25: halfway between 0 and 0.5, to the even code 0
  v[3] = 1.5f;   // 0.75: halfway between 0.5 (code 1) and 1 (code 2), to 2
  uint8_t b[16], s;
  quantize_mxfp4(v.data(), 1, 1, b, &s);
  EXPECT_EQ(s, 128);
  EXPECT_EQ(b[0], 0x96);  // low: 7/2 = 3.5 -> 4 (code 6, even of 3 and 4: codes 5 and 6), high: code 9
  EXPECT_EQ(b[1], 0x20);
  std::fill(v.begin(), v.end(), 0.0f);
  quantize_mxfp4(v.data(), 1, 1, b, &s);
  EXPECT_EQ(s, 127);
  EXPECT_EQ(b[0], 0);
}

}  // namespace
}  // namespace smoe
