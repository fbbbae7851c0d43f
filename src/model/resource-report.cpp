#include "smoe/model/resource-report.h"

#include <cstdarg>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/model/config.h"
#include "smoe/model/resources.h"

namespace smoe {

namespace {

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char s[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(s, sizeof s, fmt, args);
  va_end(args);
  return s;
}

std::string gb(double bytes) {
  char s[32];
  std::snprintf(s, sizeof s, bytes >= 1e12 ? "%.2f TB" : "%.1f GB", bytes >= 1e12 ? bytes / 1e12 : bytes / 1e9);
  return s;
}

std::string billions(double n) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f B", n / 1e9);
  return s;
}

std::string duration(double seconds) {
  char s[32];
  if (seconds >= 86400) std::snprintf(s, sizeof s, "%.1f d", seconds / 86400);
  else if (seconds >= 3600) std::snprintf(s, sizeof s, "%.1f h", seconds / 3600);
  else std::snprintf(s, sizeof s, "%.0f min", seconds / 60);
  return s;
}

std::string json_report(const ResourceReportOptions& o, const ModelConfig& c, const ClusterSpec& cluster) {
  const ParameterCounts p = count_parameters(c);
  nlohmann::json json = {{"model_type", c.model_type},
                        {"parameters", {{"total", p.total()}, {"embed", p.embed}, {"lm_head", p.lm_head},
                                        {"attention", p.attention}, {"dense_mlp", p.dense_mlp},
                                        {"routed_experts", p.routed_experts}, {"shared_experts", p.shared_experts},
                                        {"router", p.router}, {"norms", p.norms}, {"mtp", p.mtp},
                                        {"active_per_token", p.active_per_token}}},
                        {"checkpoint_bytes", checkpoint_bytes(c, 2.0)},
                        {"plans", nlohmann::json::array()}};
  for (int P : o.ranks)
    for (bool layerwise : {false, true}) {
      const ResourcePlan r = plan_resources(c, P, layerwise, o.tokens, o.context, o.batch, cluster);
      json["plans"].push_back({{"ranks", P}, {"schedule", layerwise ? "layerwise" : "default"},
                              {"weights_held", r.resident_weights}, {"activations", r.activations},
                              {"held_hidden", r.held_hidden}, {"dequant_scratch", r.dequant_scratch},
                              {"per_rank", r.total_per_rank()}, {"exchange_bytes_per_token", r.exchange_bytes_per_token},
                              {"flops_per_token", r.flops_per_token}, {"compute_seconds", r.compute_seconds},
                              {"exchange_seconds", r.exchange_seconds}});
    }
  return json.dump(1) + "\n";
}

std::string table_report(const ResourceReportOptions& o, const ModelConfig& c, const ClusterSpec& cluster) {
  const ParameterCounts p = count_parameters(c);
  std::string out;
  out += format("model: %s (%s)\n", c.model_type.c_str(), c.path.c_str());
  out += format("parameters: %s loaded", billions(p.total()).c_str());
  if (p.mtp > 0) out += format(" (+%s in %lld MTP layer(s), not loaded)", billions(p.mtp).c_str(),
                             static_cast<long long>(c.num_nextn_predict_layers));
  out += format("; %s active per token\n", billions(p.active_per_token).c_str());
  out += format("  embedding %s, head %s, attention %s, dense MLPs %s, routed experts %s (%lld MoE layers, up to %lld "
              "experts of %.1f M), shared experts %s, routers %s\n",
              billions(p.embed).c_str(), billions(p.lm_head).c_str(), billions(p.attention).c_str(),
              billions(p.dense_mlp).c_str(), billions(p.routed_experts).c_str(),
              static_cast<long long>(c.num_moe_layers()), static_cast<long long>(c.max_experts()), p.per_expert / 1e6,
              billions(p.shared_experts).c_str(), billions(p.router).c_str());
  const std::string format_on_disk =
      c.fp8     ? "FP8 E4M3 projections, " + std::to_string(c.fp8_block_rows) + "x" + std::to_string(c.fp8_block_cols) +
                      " float32 block scales"
      : c.mxfp4 ? "MXFP4 experts, BF16 elsewhere"
                : "BF16";
  out += format("checkpoint on disk: %s (%s)\n", gb(checkpoint_bytes(c, 2.0)).c_str(), format_on_disk.c_str());
  out += format("cluster: %s, %.0f GB, %.0f TFLOP/s BF16 at %.0f%% MFU, %d per node, %.0f GB/s in a node, %.0f GB/s "
              "between nodes (per GPU)\n",
              cluster.gpu.c_str(), cluster.memory_bytes / 1e9, cluster.peak_flops / 1e12, 100 * cluster.mfu,
              cluster.gpus_per_node, cluster.intra_node_bytes_per_s / 1e9, cluster.inter_node_bytes_per_s / 1e9);
  out += format("collect over %.3g tokens, context %lld, batch %lld, bf16 compute, output head not loaded\n\n", o.tokens,
              static_cast<long long>(o.context), static_cast<long long>(o.batch));
  out += format("| ranks | schedule | weights held | step activations | held hidden states | FP8 scratch | per rank | "
              "fits %.0f GB | all-to-all per token | compute | exchange | total |\n",
              cluster.memory_bytes / 1e9);
  out += format("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int P : o.ranks) {
    for (bool layerwise : {false, true}) {
      const ResourcePlan r = plan_resources(c, P, layerwise, o.tokens, o.context, o.batch, cluster);
      out += format("| %d | %s | %s | %s | %s | %s | %s | %s | %.2f MB | %s | %s | %s |\n", P,
                  layerwise ? "layerwise" : "default", gb(r.resident_weights).c_str(), gb(r.activations).c_str(),
                  gb(r.held_hidden).c_str(), gb(r.dequant_scratch).c_str(), gb(r.total_per_rank()).c_str(),
                  r.total_per_rank() <= cluster.memory_bytes ? "yes" : "no", r.exchange_bytes_per_token / 1e6,
                  duration(r.compute_seconds).c_str(), duration(r.exchange_seconds).c_str(),
                  duration(r.total_seconds()).c_str());
    }
  }
  const ResourcePlan one = plan_resources(c, 1, true, o.tokens, o.context, o.batch, cluster);
  out += format("\nlayerwise on disk: the checkpoint (%s), read once per task; the statistics file; no hidden states "
              "(a resumed run recomputes the finished layers). In RAM: the hidden states of the rank's share, "
              "%s over all ranks (tokens x hidden x 2 bytes).\n",
              gb(one.disk_bytes).c_str(), gb(one.held_hidden).c_str());
  return out;
}

}  // namespace

std::string resource_report(const ResourceReportOptions& o) {
  const ModelConfig c = read_model_config(o.model);
  ClusterSpec cluster = cluster_preset(o.gpu);
  cluster.gpus_per_node = o.gpus_per_node;
  cluster.mfu = o.mfu;
  SMOE_CHECK_INPUT(cluster.gpus_per_node >= 1, "--gpus-per-node must be positive");
  SMOE_CHECK_INPUT(cluster.mfu > 0 && cluster.mfu <= 1, "--mfu must lie in (0, 1], found ", cluster.mfu);
  SMOE_CHECK_INPUT(o.tokens >= 1, "--tokens must be positive");
  SMOE_CHECK_INPUT(o.context >= 2 && o.batch >= 1, "--context must be at least 2 and --batch positive");
  return o.json ? json_report(o, c, cluster) : table_report(o, c, cluster);
}

}  // namespace smoe
