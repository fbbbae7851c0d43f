// smoe plan-resources: memory per rank, all-to-all volume and a time estimate for
// collecting statistics with a model, from its config.json alone (docs/scale.md).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/options.h"
#include "smoe/model/resources.h"

namespace smoe {

namespace {

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

std::vector<int> rank_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    SMOE_CHECK_INPUT(!item.empty() && *end == '\0' && v >= 1 && v <= 1000000, "--ranks must be a comma-separated list of "
                     "positive integers, found '", clip(text), "'");
    out.push_back(static_cast<int>(v));
  }
  SMOE_CHECK_INPUT(!out.empty(), "--ranks must name at least one rank count");
  return out;
}

}  // namespace

int run_plan_resources(int argc, char** argv) {
  po::options_description opts("smoe plan-resources options");
  opts.add_options()("model", po::value<std::string>()->required(), "checkpoint folder or its config.json")(
      "ranks", po::value<std::string>()->default_value("8,16,32,64"), "rank (GPU) counts, comma-separated")(
      "tokens", po::value<double>()->default_value(1e8), "corpus tokens to collect statistics over")(
      "context", po::value<int64_t>()->default_value(4096), "collect's --context")(
      "batch", po::value<int64_t>()->default_value(1), "collect's --batch")(
      "gpu", po::value<std::string>()->default_value("h100"), "h100, h200, a100, b200 or mi300x")(
      "gpus-per-node", po::value<int>()->default_value(8), "GPUs (ranks) per node")(
      "mfu", po::value<double>()->default_value(0.35), "fraction of the GPU's BF16 peak the forward pass reaches")(
      "json", po::bool_switch(), "print the figures as JSON instead of a table");
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"plan-resources", "--model DIR|config.json [options]",
                                      "Prints parameters, checkpoint size, memory per rank for both collect schedules, "
                                      "all-to-all volume per token and the time to collect statistics on a GPU cluster."},
                         opts, vm))
    return 0;
  const ModelConfig c = read_model_config(vm["model"].as<std::string>());
  ClusterSpec cluster = cluster_preset(vm["gpu"].as<std::string>());
  cluster.gpus_per_node = vm["gpus-per-node"].as<int>();
  cluster.mfu = vm["mfu"].as<double>();
  SMOE_CHECK_INPUT(cluster.gpus_per_node >= 1, "--gpus-per-node must be positive");
  SMOE_CHECK_INPUT(cluster.mfu > 0 && cluster.mfu <= 1, "--mfu must lie in (0, 1], found ", cluster.mfu);
  const double tokens = vm["tokens"].as<double>();
  SMOE_CHECK_INPUT(tokens >= 1, "--tokens must be positive");
  const int64_t context = vm["context"].as<int64_t>(), batch = vm["batch"].as<int64_t>();
  SMOE_CHECK_INPUT(context >= 2 && batch >= 1, "--context must be at least 2 and --batch positive");

  const ParameterCounts p = count_parameters(c);
  if (vm["json"].as<bool>()) {
    nlohmann::json out = {{"model_type", c.model_type},
                          {"parameters", {{"total", p.total()}, {"embed", p.embed}, {"lm_head", p.lm_head},
                                          {"attention", p.attention}, {"dense_mlp", p.dense_mlp},
                                          {"routed_experts", p.routed_experts}, {"shared_experts", p.shared_experts},
                                          {"router", p.router}, {"norms", p.norms}, {"mtp", p.mtp},
                                          {"active_per_token", p.active_per_token}}},
                          {"checkpoint_bytes", checkpoint_bytes(c, 2.0)},
                          {"plans", nlohmann::json::array()}};
    for (int P : rank_list(vm["ranks"].as<std::string>()))
      for (bool layerwise : {false, true}) {
        const ResourcePlan r = plan_resources(c, P, layerwise, tokens, context, batch, cluster);
        out["plans"].push_back({{"ranks", P}, {"schedule", layerwise ? "layerwise" : "default"},
                                {"weights_held", r.resident_weights}, {"activations", r.activations},
                                {"held_hidden", r.held_hidden}, {"dequant_scratch", r.dequant_scratch},
                                {"per_rank", r.total_per_rank()}, {"exchange_bytes_per_token", r.exchange_bytes_per_token},
                                {"flops_per_token", r.flops_per_token}, {"compute_seconds", r.compute_seconds},
                                {"exchange_seconds", r.exchange_seconds}});
      }
    std::printf("%s\n", out.dump(1).c_str());
    return 0;
  }
  std::printf("model: %s (%s)\n", c.model_type.c_str(), c.path.c_str());
  std::printf("parameters: %s loaded", billions(p.total()).c_str());
  if (p.mtp > 0) std::printf(" (+%s in %lld MTP layer(s), not loaded)", billions(p.mtp).c_str(),
                             static_cast<long long>(c.num_nextn_predict_layers));
  std::printf("; %s active per token\n", billions(p.active_per_token).c_str());
  std::printf("  embedding %s, head %s, attention %s, dense MLPs %s, routed experts %s (%lld MoE layers, up to %lld "
              "experts of %.1f M), shared experts %s, routers %s\n",
              billions(p.embed).c_str(), billions(p.lm_head).c_str(), billions(p.attention).c_str(),
              billions(p.dense_mlp).c_str(), billions(p.routed_experts).c_str(),
              static_cast<long long>(c.num_moe_layers()), static_cast<long long>(c.max_experts()), p.per_expert / 1e6,
              billions(p.shared_experts).c_str(), billions(p.router).c_str());
  std::printf("checkpoint on disk: %s (%s)\n", gb(checkpoint_bytes(c, 2.0)).c_str(),
              c.fp8 ? ("FP8 E4M3 projections, " + std::to_string(c.fp8_block_rows) + "x" +
                       std::to_string(c.fp8_block_cols) + " float32 block scales")
                          .c_str()
                    : "BF16");
  std::printf("cluster: %s, %.0f GB, %.0f TFLOP/s BF16 at %.0f%% MFU, %d per node, %.0f GB/s in a node, %.0f GB/s "
              "between nodes (per GPU)\n",
              cluster.gpu.c_str(), cluster.memory_bytes / 1e9, cluster.peak_flops / 1e12, 100 * cluster.mfu,
              cluster.gpus_per_node, cluster.intra_node_bytes_per_s / 1e9, cluster.inter_node_bytes_per_s / 1e9);
  std::printf("collect over %.3g tokens, context %lld, batch %lld, bf16 compute, output head not loaded\n\n", tokens,
              static_cast<long long>(context), static_cast<long long>(batch));
  std::printf("| ranks | schedule | weights held | step activations | held hidden states | FP8 scratch | per rank | "
              "fits %.0f GB | all-to-all per token | compute | exchange | total |\n",
              cluster.memory_bytes / 1e9);
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int P : rank_list(vm["ranks"].as<std::string>())) {
    for (bool layerwise : {false, true}) {
      const ResourcePlan r = plan_resources(c, P, layerwise, tokens, context, batch, cluster);
      std::printf("| %d | %s | %s | %s | %s | %s | %s | %s | %.2f MB | %s | %s | %s |\n", P,
                  layerwise ? "layerwise" : "default", gb(r.resident_weights).c_str(), gb(r.activations).c_str(),
                  gb(r.held_hidden).c_str(), gb(r.dequant_scratch).c_str(), gb(r.total_per_rank()).c_str(),
                  r.total_per_rank() <= cluster.memory_bytes ? "yes" : "no", r.exchange_bytes_per_token / 1e6,
                  duration(r.compute_seconds).c_str(), duration(r.exchange_seconds).c_str(),
                  duration(r.total_seconds()).c_str());
    }
  }
  const ResourcePlan one = plan_resources(c, 1, true, tokens, context, batch, cluster);
  std::printf("\nlayerwise on disk: the checkpoint (%s), read once per task; the statistics file; no hidden states "
              "(a resumed run recomputes the finished layers). In RAM: the hidden states of the rank's share, "
              "%s over all ranks (tokens x hidden x 2 bytes).\n",
              gb(one.disk_bytes).c_str(), gb(one.held_hidden).c_str());
  return 0;
}

}  // namespace smoe
