// The local MoE executor against a token-by-token loop, the router's rules, and
// the decoder's expert filter.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "smoe/model/moe.h"
#include "smoe/model/router.h"
#include "tiny-model.h"

namespace smoe {
namespace {

MoeLayer random_layer(int64_t E, int64_t d, int64_t ff) {
  MoeLayer m;
  m.num_experts = E;
  m.router = at::randn({E, d});
  for (int64_t e = 0; e < E; ++e)
    m.experts.push_back({at::randn({ff, d}) * 0.2, at::randn({ff, d}) * 0.2, at::randn({d, ff}) * 0.2});
  return m;
}

TEST(LocalMoeExecutor, EqualsTokenByTokenLoop) {
  at::manual_seed(1);
  const int64_t T = 37, d = 16, E = 6;
  MoeLayer m = random_layer(E, d, 24);
  at::Tensor x = at::randn({T, d});
  RouterConfig rc;
  rc.top_k = 2;
  rc.norm_topk_prob = true;
  Routing r = route(rc, x, m.router, {});
  LocalMoeExecutor exec;
  at::Tensor y = exec.run(m, x, r, nullptr);
  for (int64_t t = 0; t < T; ++t) {
    at::Tensor expect = at::zeros({d});
    for (int64_t j = 0; j < 2; ++j) {
      int64_t e = r.experts[t][j].item<int64_t>();
      expect += r.weights[t][j] * gated_mlp(m.experts[static_cast<size_t>(e)], x[t].unsqueeze(0))[0];
    }
    EXPECT_TRUE(at::allclose(y[t], expect, 1e-5, 1e-6)) << "token " << t;
  }
}

TEST(Router, SoftmaxTopkWithAndWithoutRenormalisation) {
  at::manual_seed(2);
  at::Tensor x = at::randn({5, 8}), w = at::randn({4, 8});
  RouterConfig rc;
  rc.top_k = 2;
  Routing plain = route(rc, x, w, {});
  at::Tensor probs = at::softmax(at::linear(x, w), -1);
  EXPECT_TRUE(at::allclose(plain.scores, probs));
  auto [top, idx] = probs.topk(2, -1);
  EXPECT_TRUE(at::equal(plain.experts, idx));
  EXPECT_TRUE(at::allclose(plain.weights, top));
  rc.norm_topk_prob = true;
  Routing norm = route(rc, x, w, {});
  EXPECT_TRUE(at::allclose(norm.weights.sum(-1), at::ones({5})));
}

class CountingObserver : public RoutingObserver {
 public:
  int64_t routed = 0, outputs = 0;
  void on_routing(const MoeLayer&, const at::Tensor& x, const Routing& r) override { routed += r.experts.numel(); }
  void on_expert_output(const MoeLayer&, int64_t, const at::Tensor& slots, const at::Tensor&) override {
    outputs += slots.numel();
  }
};

TEST(Decoder, ExpertFilterLoadsOnlyHeldExperts) {
  std::string dir = testing::TempDir() + "smoe-dec-" + std::to_string(::getpid());
  testing_util::write_tiny_mixtral(dir);
  Checkpoint ck(dir);
  Decoder all(ck, {at::kFloat, at::kCPU, {}});
  Decoder half(ck, {at::kFloat, at::kCPU, [](int64_t, int64_t e) { return e < 2; }});
  const uint64_t expert_bytes = 3 * 48 * 32 * 4;
  EXPECT_EQ(all.parameter_bytes() - half.parameter_bytes(), 2 * 2 * expert_bytes);
  EXPECT_FALSE(half.moe_layer(0)->experts[3].defined());

  at::Tensor tokens = at::randint(0, 300, {2, 9}, at::kLong);
  LocalMoeExecutor exec;
  CountingObserver obs;
  at::Tensor logits = all.forward(tokens, exec, &obs);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 9, 300}));
  EXPECT_EQ(obs.routed, 2 * 18 * 2);   // 2 layers, 18 tokens, top-2
  EXPECT_EQ(obs.outputs, obs.routed);  // every routed slot produced one output
  // Causality: changing the last token leaves earlier logits unchanged (up to GEMM
  // blocking: the experts see a different batch of tokens).
  at::Tensor changed = tokens.clone();
  changed[0][8] = (tokens[0][8].item<int64_t>() + 1) % 300;
  at::Tensor logits2 = all.forward(changed, exec);
  EXPECT_TRUE(at::allclose(logits2.narrow(1, 0, 8), logits.narrow(1, 0, 8), 1e-5, 1e-5));
}

}  // namespace
}  // namespace smoe
