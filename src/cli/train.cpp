// smoe train: trains a small SMoE (Mixtral layout) from scratch, data parallel.
#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/core/signals.h"
#include "smoe/parallel/comm.h"
#include "smoe/train/trainer.h"

namespace smoe {

int run_train(int argc, char** argv) {
  checkpoint_on_stop();  // from the start: a signal while loading is answered at the first step
  TrainOptions o;
  po::options_description opts("smoe train options");
  opts.add_options()("out", po::value<std::string>(&o.out)->required(), "checkpoint folder to write")(
      "data", po::value<std::vector<std::string>>()->composing(), "training JSONL file (repeatable)")(
      "suite", po::value<std::string>(), "a synthetic suite folder: trains on every DIR/<task>/train.jsonl")(
      "experts", po::value<int64_t>(&o.experts)->default_value(8), "experts per MoE layer")(
      "top-k", po::value<int64_t>(&o.top_k)->default_value(2), "experts per token")(
      "hidden", po::value<int64_t>(&o.hidden)->default_value(64), "hidden size")(
      "layers", po::value<int64_t>(&o.layers)->default_value(2), "decoder layers")(
      "heads", po::value<int64_t>(&o.heads)->default_value(4), "attention heads")(
      "kv-heads", po::value<int64_t>(&o.kv_heads)->default_value(2), "key/value heads")(
      "ffn", po::value<int64_t>(&o.ffn)->default_value(128), "each expert's hidden size")(
      "vocab", po::value<int64_t>(&o.vocab)->default_value(256), "vocabulary (byte tokenizer: 256)")(
      "tokenizer", po::value<std::string>(&o.tokenizer)->default_value("byte"),
      "for text records: byte, a tokenizer.json, a tiktoken.model or a SentencePiece .model (copied into --out)")(
      "context", po::value<int64_t>(&o.context)->default_value(64), "sequence length")(
      "batch", po::value<int64_t>(&o.batch)->default_value(32), "sequences per step, over all ranks")(
      "steps", po::value<int64_t>(&o.steps)->default_value(300), "optimizer steps")(
      "lr", po::value<double>(&o.lr)->default_value(3e-3), "peak learning rate")(
      "warmup", po::value<int64_t>(&o.warmup)->default_value(30), "warm-up steps")(
      "min-lr-ratio", po::value<double>(&o.min_lr_ratio)->default_value(0.1), "final / peak learning rate")(
      "weight-decay", po::value<double>(&o.weight_decay)->default_value(0.01), "AdamW weight decay")(
      "clip", po::value<double>(&o.clip)->default_value(1.0), "gradient norm clip")(
      "aux-loss", po::value<double>(&o.aux_loss)->default_value(0.01), "load-balancing loss coefficient")(
      "seed", po::value<uint64_t>(&o.seed)->default_value(0), "seed for weights and data order")(
      "checkpoint-every", po::value<int64_t>(&o.checkpoint_every)->default_value(100), "steps between checkpoints")(
      "log-every", po::value<int64_t>(&o.log_every)->default_value(10), "steps between progress lines")(
      "resume", po::bool_switch(&o.resume), "continue from the checkpoint in --out")(
      "shard-experts", po::bool_switch(&o.shard_experts),
      "spread each layer's experts over the ranks (expert parallel) instead of replicating them")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads per rank")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"train", "--out DIR (--data FILE ... | --suite DIR) [options]",
                                      "Trains a small Mixtral-layout SMoE from scratch (AdamW, warm-up and cosine "
                                      "schedule, load-balancing loss, gradient clipping), data parallel over MPI ranks."},
                         opts, vm))
    return 0;
  o.out = normalise_output_path(o.out, "--out");
  if (vm.count("data")) o.data = vm["data"].as<std::vector<std::string>>();
  if (vm.count("suite")) {
    const std::string suite = vm["suite"].as<std::string>();
    SMOE_CHECK_INPUT(std::filesystem::is_directory(suite), suite, ": not a folder");
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(suite))
      if (std::filesystem::exists(entry.path() / "train.jsonl")) files.push_back((entry.path() / "train.jsonl").string());
    std::sort(files.begin(), files.end());
    SMOE_CHECK_INPUT(!files.empty(), suite, ": holds no <task>/train.jsonl");
    o.data.insert(o.data.end(), files.begin(), files.end());
  }
  o.other_inputs = option_inputs(vm, {"tokenizer"});
  SMOE_CHECK_INPUT(vm["threads"].as<int>() >= 0, "--threads must not be negative");
  at::set_num_threads(resolve_threads(vm["threads"].as<int>()));
  std::unique_ptr<Communicator> host = make_mpi_communicator();
  bool stopped = false;
  const double loss = train(o, *host, &stopped);
  if (stopped) return kExitCheckpointed;
  log_info(str("train: final loss ", loss, "; wrote ", o.out));
  return 0;
}

}  // namespace smoe
