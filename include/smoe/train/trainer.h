// Training a small SMoE from scratch (Mixtral layout): AdamW, linear warm-up then
// cosine decay, the Switch load-balancing loss on every MoE layer, gradient
// clipping; data parallel over MPI ranks (gradients of replicated weights
// all-reduced), experts replicated or sharded over the ranks (expert parallel,
// tokens exchanged all-to-all forwards and backwards). Checkpoints are HF
// checkpoint folders (one shard per rank when sharded) plus the optimizer state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/parallel/job.h"

namespace smoe {


struct TrainOptions {
  // The model.
  int64_t vocab = 256, hidden = 64, layers = 2, heads = 4, kv_heads = 2, experts = 8, top_k = 2, ffn = 128;
  int64_t context = 64;
  // The optimisation.
  int64_t batch = 32;  // sequences per step, over all ranks
  int64_t steps = 300;
  double lr = 3e-3, min_lr_ratio = 0.1, weight_decay = 0.01, clip = 1.0, aux_loss = 0.01;
  int64_t warmup = 30;
  uint64_t seed = 0;
  int64_t checkpoint_every = 100, log_every = 10;
  bool resume = false;
  bool overwrite = false;      // replace an --out that is not an earlier output of smoe train
  std::vector<std::string> other_inputs;  // files read besides the data (--config): never the output
  bool shard_experts = false;  // spread each layer's experts over the ranks (expert parallel)
  std::vector<std::string> data;  // training JSONL files (or Megatron indexed datasets)
  std::string suite;              // and every <task>/train.jsonl of this folder (smoe data synth)
  // How text records become ids: "byte" (the model then says so in config.json:
  // smoe_tokenizer = byte), or a tokenizer file, copied into the model folder
  // (with the tokenizer_config.json beside it) so that later jobs find it.
  std::string tokenizer = "byte";
  std::string out;
};

// Trains and writes `out` (config.json, the weights, optimizer-R.pt,
// trainer_state.json, train_log.jsonl); every rank calls. A stop request
// (SIGTERM/SIGUSR1, core/signals.h) checkpoints after the current step and
// returns Checkpointed.
JobEnd train(const TrainOptions& options, JobContext& context);

}  // namespace smoe
