// libFuzzer target: config.json parsing on arbitrary bytes. Text that is not JSON
// is skipped (nlohmann's parser is not ours); JSON that is not a usable model
// config must end in InputError. A config that parses must satisfy what the model
// core assumes without checking again.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  smoe::ModelConfig c;
  try {
    c = smoe::parse_model_config(j, "fuzz/config.json");
  } catch (const smoe::InputError&) {
    return 0;
  }
  if (c.vocab_size < 1 || c.hidden_size < 1 || c.num_layers < 1 || c.num_heads < 1 || c.num_kv_heads < 1 ||
      c.head_dim < 1 || c.num_heads % c.num_kv_heads != 0)
    std::abort();
  if (static_cast<int64_t>(c.layer_experts.size()) != c.num_layers) std::abort();
  for (int64_t l = 0; l < c.num_layers; ++l)
    if (c.is_moe(l) && (c.router.top_k < 1 || c.router.top_k > c.layer_experts[static_cast<size_t>(l)])) std::abort();
  if (c.num_moe_layers() > 0 && c.moe_intermediate_size < 1) std::abort();
  // Group-limited routing, MLA and YaRN: what the router and attention index with.
  const auto& r = c.router;
  if (r.n_group < 1 || r.topk_group < 1 || r.topk_group > r.n_group) std::abort();
  for (int64_t l = 0; l < c.num_layers; ++l)
    if (c.is_moe(l) && r.n_group > 1 && (c.layer_experts[static_cast<size_t>(l)] % r.n_group != 0 ||
                                         r.top_k > r.topk_group * (c.layer_experts[static_cast<size_t>(l)] / r.n_group)))
      std::abort();
  if (!(c.attention_scale > 0) || !std::isfinite(c.attention_scale)) std::abort();
  if (c.mla.enabled() && (c.mla.qk_rope_head_dim < 2 || c.mla.qk_rope_head_dim % 2 != 0 || c.mla.v_head_dim < 1 ||
                          c.head_dim != c.mla.qk_rope_head_dim))
    std::abort();
  if (c.yarn.enabled && !(c.yarn.factor >= 1 && c.yarn.original_max_position > 0 && c.yarn.attention_factor > 0))
    std::abort();
  if (c.fp8 && (c.fp8_block_rows < 1 || c.fp8_block_cols < 1)) std::abort();
  return 0;
}
