// MXFP4 (OCP microscaling, as gpt-oss stores its experts): a row of `cols` values
// in groups of 32, each group 16 bytes of E2M1 codes and one E8M0 scale byte.
// Byte j of a group holds element 2j in its low nibble and 2j + 1 in its high
// nibble; a nibble is S.EE.M (values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, code 8 is -0);
// the scale byte s multiplies the group by 2^(s - 127); 0xFF is E8M0's NaN, which
// the checkpoint loader refuses before decoding. Torch-free.
#pragma once

#include <cstdint>

namespace smoe {

constexpr int64_t kMxfp4Group = 32;  // values per scale
constexpr float kMxfp4Max = 6.0f;    // largest E2M1 magnitude

// The value of an E2M1 nibble (0..15).
float e2m1_to_float(uint8_t nibble);

// Decodes `rows` rows of `groups` groups: blocks [rows, groups, 16], scales
// [rows, groups] -> out [rows, groups * 32], exactly (every value is a float32).
void dequantize_mxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t groups, float* out);

// Encodes w [rows, groups * 32]: each group's scale is the smallest power of two
// 2^(s - 127) with max|w| / scale <= 6 (so nothing is clipped; s = 127 for an
// all-zero group), each value the nearest E2M1 value of w / scale, ties to the
// even code. Scales beyond E8M0's range saturate at s = 0 and 254.
void quantize_mxfp4(const float* w, int64_t rows, int64_t groups, uint8_t* blocks, uint8_t* scales);

}  // namespace smoe
