// FP8 E4M3FN ("float8_e4m3fn": 1 sign, 4 exponent bits with bias 7, 3 mantissa
// bits, no infinities, NaN only as S.1111.111, largest finite 448) and the block
// scaling of DeepSeek-V3-style checkpoints: weight W [rows, cols] is stored as
// bytes Q and a float32 `weight_scale_inv` S [ceil(rows/br), ceil(cols/bc)], with
// W[i, j] = float(Q[i, j]) * S[i / br, j / bc]. Torch-free.
#pragma once

#include <cstdint>

namespace smoe {

constexpr float kFp8E4m3Max = 448.0f;

// The value of an E4M3FN byte (NaN for 0x7F and 0xFF); exact in float32.
float fp8_e4m3_to_float(uint8_t byte);
// The nearest E4M3FN byte (ties to the even code), saturating at +-448; NaN -> 0x7F.
uint8_t float_to_fp8_e4m3(float value);

// Dequantises Q [rows, cols] with block scales S into out [rows, cols]. Returns
// the flat index of the first NaN byte, or -1 when there is none.
int64_t dequantize_fp8_blocks(const uint8_t* q, int64_t rows, int64_t cols, const float* scale, int64_t block_rows,
                              int64_t block_cols, float* out);

// Quantises W [rows, cols]: each block's scale is its largest magnitude / 448
// (1 for an all-zero block), each byte the nearest E4M3FN value of W / scale.
void quantize_fp8_blocks(const float* w, int64_t rows, int64_t cols, int64_t block_rows, int64_t block_cols,
                         uint8_t* q, float* scale);

}  // namespace smoe
