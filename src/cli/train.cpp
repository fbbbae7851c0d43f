// smoe train: the options of train/trainer.h.
#include "jobs.h"
#include "smoe/core/options.h"
#include "smoe/core/signals.h"
#include "smoe/parallel/job.h"
#include "smoe/train/trainer.h"

namespace smoe {

int run_train(int argc, char** argv) {
  TrainOptions o;
  po::options_description opts("smoe train options");
  opts.add_options()("out", po::value<std::string>(&o.out)->required(), "checkpoint folder to write")(
      "data", po::value(&o.data)->composing(), "training JSONL file (repeatable)")(
      "suite", po::value(&o.suite), "a synthetic suite folder: trains on every DIR/<task>/train.jsonl")(
      "experts", po::value(&o.experts)->default_value(o.experts), "experts per MoE layer")(
      "top-k", po::value(&o.top_k)->default_value(o.top_k), "experts per token")(
      "hidden", po::value(&o.hidden)->default_value(o.hidden), "hidden size")(
      "layers", po::value(&o.layers)->default_value(o.layers), "decoder layers")(
      "heads", po::value(&o.heads)->default_value(o.heads), "attention heads")(
      "kv-heads", po::value(&o.kv_heads)->default_value(o.kv_heads), "key/value heads")(
      "ffn", po::value(&o.ffn)->default_value(o.ffn), "each expert's hidden size")(
      "vocab", po::value(&o.vocab)->default_value(o.vocab), "vocabulary (byte tokenizer: 256)")(
      "tokenizer", po::value(&o.tokenizer)->default_value(o.tokenizer),
      "for text records: byte, a tokenizer.json, a tiktoken.model or a SentencePiece .model (copied into --out)")(
      "context", po::value(&o.context)->default_value(o.context), "sequence length")(
      "batch", po::value(&o.batch)->default_value(o.batch), "sequences per step, over all ranks")(
      "steps", po::value(&o.steps)->default_value(o.steps), "optimizer steps")(
      "lr", po::value(&o.lr)->default_value(o.lr), "peak learning rate")(
      "warmup", po::value(&o.warmup)->default_value(o.warmup), "warm-up steps")(
      "min-lr-ratio", po::value(&o.min_lr_ratio)->default_value(o.min_lr_ratio), "final / peak learning rate")(
      "weight-decay", po::value(&o.weight_decay)->default_value(o.weight_decay), "AdamW weight decay")(
      "clip", po::value(&o.clip)->default_value(o.clip), "gradient norm clip")(
      "aux-loss", po::value(&o.aux_loss)->default_value(o.aux_loss), "load-balancing loss coefficient")(
      "seed", po::value(&o.seed)->default_value(o.seed), "seed for weights and data order")(
      "checkpoint-every", po::value(&o.checkpoint_every)->default_value(o.checkpoint_every), "steps between checkpoints")(
      "log-every", po::value(&o.log_every)->default_value(o.log_every), "steps between progress lines")(
      "resume", po::bool_switch(&o.resume), "continue from the checkpoint in --out")(
      "shard-experts", po::bool_switch(&o.shard_experts),
      "spread each layer's experts over the ranks (expert parallel) instead of replicating them")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads per rank")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  add_device_option(opts);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"train", "--out DIR (--data FILE ... | --suite DIR) [options]",
                                      "Trains a small Mixtral-layout SMoE from scratch (AdamW, warm-up and cosine "
                                      "schedule, load-balancing loss, gradient clipping), data parallel over MPI ranks."},
                         opts, vm))
    return 0;
  o.other_inputs = option_inputs(vm, {"tokenizer"});
  JobContext context(job_setup("train", argc, argv, vm));
  return train(o, context) == JobEnd::Checkpointed ? kExitCheckpointed : 0;
}

}  // namespace smoe
