// smoe's own CPU matrix product y = x w^T, for the shapes of expert-parallel
// collection: few rows (the tokens one expert received from one rank, tens to
// hundreds, rarely a multiple of a BLAS tile) against a weight in nn.Linear's
// [out, in] layout, read as it lies in the mapped checkpoint (never copied).
//
// x is first packed into panels of 16 rows (pack_rows); the kernel then keeps a
// 6 x 16 block of y in registers, broadcasting one weight element against 16
// rows at a time. Each y element is one float32 fused multiply-add chain over k
// in order, restarted every kChunk elements, the chunk sums added in order. So a
// token's result depends neither on which other tokens share the call, nor on the
// thread count or how columns are split, nor on the rank count: stronger than the
// BLAS, whose blocking and edge kernels change with m.
//
// x86-64 with AVX2 and FMA only (checked at run time: `available()`); torch-free.
#pragma once

#include <cstdint>

namespace smoe::gemm {

inline constexpr int64_t kPanelRows = 16;    // x rows per packed panel
inline constexpr int64_t kChunk = 256;       // k elements per multiply-add chain
inline constexpr int64_t kColumnBlock = 6;   // y columns (w rows) one tile computes

// Whether this CPU runs the kernels (AVX2 and FMA).
bool available();

// Floats pack_rows writes for x [m, k].
int64_t packed_size(int64_t m, int64_t k);
// Panels [panel_begin, panel_end) of x [m, k] packed as [panel][k][kPanelRows],
// rows past m zero; element (i, j) of x is x[i * row_stride + j * col_stride]
// (row- or column-major). `out` must be 32-byte aligned.
void pack_rows(const float* x, int64_t row_stride, int64_t col_stride, int64_t m, int64_t k, float* out,
               int64_t panel_begin, int64_t panel_end);

// Columns [n_begin, n_end) of y = x w^T, with x [m, k] packed by pack_rows and
// w [*, ldw] row-major float32; y's element (i, j) goes to
// y[i * row_stride + j * col_stride]. Callers may split [0, n) between threads
// anywhere: the results are the same.
void xwt(const float* packed, int64_t m, int64_t k, const float* w, int64_t ldw, float* y, int64_t row_stride,
         int64_t col_stride, int64_t n_begin, int64_t n_end);

}  // namespace smoe::gemm
