// smoe's CPU matrix product (model/gemm.h) against float64 products, against its
// documented summation (one fused multiply-add chain per chunk of k, chunks added
// in order), and its independence from the rows, columns and threads of a call.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "smoe/model/gemm.h"
#include "smoe/model/layers.h"

namespace smoe {
namespace {

// y = x w^T through pack_rows + xwt, columns [n0, n1) only when asked.
at::Tensor kernel(const at::Tensor& x, const at::Tensor& w, int64_t n0 = 0, int64_t n1 = -1) {
  const int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  if (n1 < 0) n1 = n;
  at::Tensor xc = x.contiguous();
  at::Tensor packed = at::empty({gemm::packed_size(m, k)}, at::kFloat);
  const int64_t panels = (m + gemm::kPanelRows - 1) / gemm::kPanelRows;
  gemm::pack_rows(xc.data_ptr<float>(), k, 1, m, k, packed.data_ptr<float>(), 0, panels);
  at::Tensor y = at::full({m, n}, std::nanf(""), at::kFloat);
  gemm::xwt(packed.data_ptr<float>(), m, k, w.data_ptr<float>(), w.stride(0), y.data_ptr<float>(), n, 1, n0, n1);
  return y;
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && std::memcmp(a.contiguous().data_ptr<float>(), b.contiguous().data_ptr<float>(),
                                               static_cast<size_t>(a.numel()) * sizeof(float)) == 0;
}

class Gemm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gemm::available()) GTEST_SKIP() << "this CPU lacks AVX2 or FMA";
  }
};

TEST_F(Gemm, MatchesFloat64WithinTheSummationBound) {
  at::manual_seed(3);
  for (int64_t m : {1, 5, 8, 9, 16, 17, 37, 64, 100})
    for (int64_t n : {1, 5, 6, 7, 13, 50})
      for (int64_t k : {0, 1, 7, 8, 255, 256, 257, 600}) {
        at::Tensor x = at::randn({m, k}), w = at::randn({n, k});
        at::Tensor ref = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
        // |error| <= k u sum |x||w| (Higham's bound, u = 2^-24), with room for the chunk sums.
        at::Tensor bound = at::matmul(x.abs().to(at::kDouble), w.abs().to(at::kDouble).t()) * (k + 4) * std::ldexp(1.0, -24);
        at::Tensor err = (kernel(x, w).to(at::kDouble) - ref).abs();
        ASSERT_TRUE((err <= bound).all().item<bool>())
            << "m=" << m << " n=" << n << " k=" << k << ": max error " << err.max().item<double>();
      }
}

TEST_F(Gemm, WideOutputsComeInSlabsWithTheSameResults) {
  // 100 rows x 9400 columns is more than one slab of the kernel's scratch (4 MB).
  at::manual_seed(8);
  at::Tensor x = at::randn({100, 24}), w = at::randn({9400, 24});
  at::Tensor y = kernel(x, w);
  at::Tensor ref = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
  at::Tensor bound = at::matmul(x.abs().to(at::kDouble), w.abs().to(at::kDouble).t()) * 28 * std::ldexp(1.0, -24);
  EXPECT_TRUE(((y.to(at::kDouble) - ref).abs() <= bound).all().item<bool>());
  EXPECT_TRUE(same_bits(kernel(x, w, 9000, 9400).narrow(1, 9000, 400), y.narrow(1, 9000, 400)));
}

TEST_F(Gemm, EachElementIsOneMultiplyAddChainPerChunk) {
  at::manual_seed(4);
  const int64_t m = 19, n = 8, k = 2 * gemm::kChunk + 37;
  at::Tensor x = at::randn({m, k}), w = at::randn({n, k});
  at::Tensor y = kernel(x, w);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float total = 0.0f;
      for (int64_t k0 = 0; k0 < k; k0 += gemm::kChunk) {
        float chain = 0.0f;
        for (int64_t t = k0; t < std::min(k, k0 + gemm::kChunk); ++t) chain = std::fma(xp[i * k + t], wp[j * k + t], chain);
        total = k0 == 0 ? chain : total + chain;
      }
      ASSERT_EQ(y[i][j].item<float>(), total) << "y[" << i << ", " << j << "]";
    }
}

TEST_F(Gemm, ARowsResultDependsOnItsRowAlone) {
  at::manual_seed(5);
  const int64_t m = 45, n = 29, k = 300;
  at::Tensor x = at::randn({m, k}), w = at::randn({n, k});
  at::Tensor full = kernel(x, w);
  // Other rows around it, fewer rows, another order: the same bits.
  at::Tensor order = at::randperm(m);
  EXPECT_TRUE(same_bits(kernel(x.index_select(0, order), w), full.index_select(0, order)));
  for (int64_t rows : {1, 3, 8, 16, 17})
    EXPECT_TRUE(same_bits(kernel(x.narrow(0, 5, rows), w), full.narrow(0, 5, rows))) << rows << " rows";
  // Columns computed in pieces, as threads split them, anywhere.
  at::Tensor pieces = at::full({m, n}, std::nanf(""), at::kFloat);
  for (auto [a, b] : std::vector<std::pair<int64_t, int64_t>>{{0, 7}, {7, 12}, {12, 29}})
    pieces.narrow(1, a, b - a).copy_(kernel(x, w, a, b).narrow(1, a, b - a));
  EXPECT_TRUE(same_bits(pieces, full));
}

TEST_F(Gemm, DenseTakesTheKernelOutsideAutogradOnly) {
  ASSERT_TRUE(cpu_gemm_own()) << "SMOE_CPU_GEMM must not be set to 'torch' for this test";
  at::manual_seed(7);
  at::Tensor x = at::randn({2, 9, 40}), w = at::randn({24, 40}), b = at::randn({24});
  at::Tensor y = dense(x, w, b);
  EXPECT_TRUE(same_bits(y.reshape({18, 24}), kernel(x.reshape({18, 40}), w) + b));
  EXPECT_TRUE(at::allclose(y, at::linear(x, w, b), 1e-5, 1e-5));
  // A column-major (transposed) input or a strided one gives the same as its contiguous copy.
  at::Tensor xt = at::randn({40, 18}).t();
  EXPECT_TRUE(same_bits(dense(xt, w), dense(xt.contiguous(), w)));
  at::Tensor xs = at::randn({18, 80}).narrow(1, 3, 40);
  EXPECT_TRUE(same_bits(dense(xs, w), dense(xs.contiguous(), w)));
  // The gated MLP (its gate and up products column-major inside) equals its three dense() steps.
  GatedMlp mlp{at::randn({30, 40}), at::randn({30, 40}), at::randn({40, 30})};
  at::Tensor x2 = x.reshape({18, 40});
  EXPECT_TRUE(same_bits(gated_mlp(mlp, x2), dense(at::silu(dense(x2, mlp.gate_proj)) * dense(x2, mlp.up_proj), mlp.down_proj)));
  EXPECT_TRUE(same_bits(gated_mlp(mlp, x).reshape({18, 40}), gated_mlp(mlp, x2)));
  // Batched products (attention) through the kernel, against LibTorch's.
  at::Tensor qa = at::randn({2, 3, 17, 8}), kb = at::randn({2, 3, 8, 21});
  EXPECT_TRUE(at::allclose(batch_matmul(qa, kb), at::matmul(qa, kb), 1e-5, 1e-5));
  EXPECT_TRUE(same_bits(batch_matmul(qa, kb)[1][2], kernel(qa[1][2], kb[1][2].t().contiguous())));
  // BF16 keeps LibTorch's path: its native BF16 GEMM where the CPU has one
  // (SMOE_BF16_GEMM=native), else the product widened to F32 and rounded once.
  at::Tensor xb = x.to(at::kBFloat16), wb = w.to(at::kBFloat16);
  const at::Tensor bf16_expected = cpu_bf16_gemm_native()
                                       ? at::linear(xb, wb)
                                       : at::linear(xb.to(at::kFloat), wb.to(at::kFloat)).to(at::kBFloat16);
  EXPECT_TRUE(same_bits(dense(xb, wb).to(at::kFloat), bf16_expected.to(at::kFloat)))
      << (cpu_bf16_gemm_native() ? "native" : "widened") << " BF16 GEMM";
  // Weights being trained go through autograd, which records the graph.
  at::Tensor wg = w.clone().requires_grad_(true);
  at::Tensor yg = dense(x, wg);
  ASSERT_TRUE(yg.requires_grad());
  yg.sum().backward();
  EXPECT_TRUE(at::allclose(wg.grad(), x.reshape({18, 40}).sum(0).expand({24, 40}), 1e-4, 1e-5));
}

}  // namespace
}  // namespace smoe
