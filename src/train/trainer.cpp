#include "smoe/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/output.h"
#include "smoe/core/signals.h"
#include "smoe/parallel/comm.h"
#include "smoe/parallel/ep-executor.h"
#include "smoe/parallel/job.h"
#include "smoe/parallel/placement.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/tensor-names.h"
#include "smoe/text/corpus.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"
#include "smoe/io/tensor-io.h"
#include "smoe/text/tokenizer.h"
#include "smoe/model/decoder.h"

namespace smoe {

namespace fs = std::filesystem;

namespace {

nlohmann::json model_config(const TrainOptions& o) {
  nlohmann::json c = {{"model_type", "mixtral"},
          {"architectures", {"MixtralForCausalLM"}},
          {"vocab_size", o.vocab},
          {"hidden_size", o.hidden},
          {"num_hidden_layers", o.layers},
          {"num_attention_heads", o.heads},
          {"num_key_value_heads", o.kv_heads},
          {"intermediate_size", o.ffn},
          {"num_local_experts", o.experts},
          {"num_experts_per_tok", o.top_k},
          {"max_position_embeddings", o.context},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"sliding_window", nullptr},
          {"tie_word_embeddings", false},
          {"torch_dtype", "float32"}};
  if (o.tokenizer == "byte") c["smoe_tokenizer"] = "byte";
  return c;
}

// A tokenizer file and its tokenizer_config.json, beside the weights.
void copy_tokenizer(const TrainOptions& o, const std::string& dir) {
  if (o.tokenizer == "byte") return;
  const fs::path source(o.tokenizer);
  std::string name = source.filename().string();
  if (name != "tokenizer.json" && name != "tiktoken.model")
    name = name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0 ? "tokenizer.json" : "tokenizer.model";
  fs::copy_file(source, fs::path(dir) / name, fs::copy_options::overwrite_existing);
  const fs::path config = source.parent_path() / "tokenizer_config.json";
  if (fs::exists(config)) fs::copy_file(config, fs::path(dir) / "tokenizer_config.json", fs::copy_options::overwrite_existing);
}

// Random initial weights in Mixtral's names: N(0, 0.02), output projections scaled
// down with depth, norms at one.
std::map<std::string, at::Tensor> initial_weights(const TrainOptions& o) {
  at::manual_seed(o.seed);
  const int64_t d = o.hidden, D = o.hidden / o.heads;
  const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(o.layers));
  std::map<std::string, at::Tensor> w;
  const TensorNames names(Family::Mixtral);
  w.emplace(TensorNames::embed(), at::randn({o.vocab, d}) * 0.02);
  for (int64_t l = 0; l < o.layers; ++l) {
    w.emplace(TensorNames::in_layer(l, "input_layernorm.weight"), at::ones({d}));
    w.emplace(TensorNames::in_layer(l, "post_attention_layernorm.weight"), at::ones({d}));
    w.emplace(TensorNames::attention(l, "q_proj.weight"), at::randn({o.heads * D, d}) * 0.02);
    w.emplace(TensorNames::attention(l, "k_proj.weight"), at::randn({o.kv_heads * D, d}) * 0.02);
    w.emplace(TensorNames::attention(l, "v_proj.weight"), at::randn({o.kv_heads * D, d}) * 0.02);
    w.emplace(TensorNames::attention(l, "o_proj.weight"), at::randn({d, o.heads * D}) * out_std);
    w.emplace(names.router(l), at::randn({o.experts, d}) * 0.02);
    for (int64_t e = 0; e < o.experts; ++e) {
      w.emplace(names.expert(l, e, Proj::Gate), at::randn({o.ffn, d}) * 0.02);
      w.emplace(names.expert(l, e, Proj::Up), at::randn({o.ffn, d}) * 0.02);
      w.emplace(names.expert(l, e, Proj::Down), at::randn({d, o.ffn}) * out_std);
    }
  }
  w.emplace(TensorNames::final_norm(), at::ones({d}));
  w.emplace(TensorNames::lm_head(), at::randn({o.vocab, d}) * 0.02);
  return w;
}

bool is_expert(const std::string& name) { return name.find(".experts.") != std::string::npos; }

// Writes an HF checkpoint folder atomically over `dir`: with experts sharded, rank r
// writes shard r (its experts; rank 0 also the replicated weights), else rank 0
// writes everything; every rank saves its optimizer state.
// Rank 0's `path` on every rank.
std::string broadcast_path(const std::string& path, Communicator& host) {
  at::Tensor buf = at::zeros({4097}, at::kByte);
  SMOE_ASSERT(path.size() < 4097, "path longer than 4096 bytes: ", clip(path));
  std::memcpy(buf.data_ptr<uint8_t>(), path.data(), path.size());
  host.broadcast(buf, 0);
  return std::string(reinterpret_cast<const char*>(buf.data_ptr<uint8_t>()));
}

OutputSpec train_output(const TrainOptions& o) {
  OutputSpec spec = folder_output(o.out, "train");
  spec.overwrite = o.overwrite;
  spec.inputs = o.data;
  spec.inputs.insert(spec.inputs.end(), o.other_inputs.begin(), o.other_inputs.end());
  return spec;
}

// `log` holds the loss lines since the last checkpoint; they join the folder's
// train_log.jsonl in the new checkpoint.
void save(const std::string& dir, const TrainOptions& o, const Decoder& decoder, torch::optim::AdamW& optimizer,
          int64_t step, Communicator& host, const ExpertPlacement& placement, const std::string& log) {
  const int rank = host.rank(), ranks = host.size();
  const int files = o.shard_experts ? ranks : 1;
  std::unique_ptr<AtomicOutput> output;
  std::string tmp;
  if (rank == 0) {
    output = std::make_unique<AtomicOutput>(train_output(o));
    tmp = output->temp();
  }
  tmp = broadcast_path(tmp, host);
  if (rank != 0) track_output_temporary(tmp);  // removed here too should this rank fail
  auto shard_name = [&](int r) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", r + 1, files);
    return std::string(buf);
  };
  if (rank < files) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, t] : decoder.named_parameters())
      if (!o.shard_experts || is_expert(name) || rank == 0) tensors.emplace_back(name, t.detach().cpu());
    save_safetensors(tmp + "/" + shard_name(rank), tensors,
                     {{"format", "pt"}, {"smoe_trained_steps", std::to_string(step)}});
  }
  torch::save(optimizer, tmp + "/optimizer-" + std::to_string(rank) + ".pt");
  at::Tensor sync = at::zeros({1});
  host.all_reduce_sum(sync);
  if (rank == 0) {
    nlohmann::json map = nlohmann::json::object();
    for (const auto& [name, t] : decoder.named_parameters())
      if (!is_expert(name)) map[name] = shard_name(0);
    for (int64_t l = 0; l < o.layers; ++l)
      for (int64_t e = 0; e < o.experts; ++e)
        for (Proj p : {Proj::Gate, Proj::Down, Proj::Up})
          map[TensorNames(Family::Mixtral).expert(l, e, p)] = shard_name(o.shard_experts ? placement.owner(l, e) : 0);
    write_json_file(tmp + "/model.safetensors.index.json", {{"metadata", nlohmann::json::object()}, {"weight_map", map}});
    write_json_file(tmp + "/config.json", model_config(o));
    copy_tokenizer(o, tmp);
    write_json_file(tmp + "/trainer_state.json", {{"step", step}, {"seed", o.seed}, {"batch", o.batch},
                                                  {"ranks", ranks}, {"shard_experts", o.shard_experts}});
    if (fs::exists(dir + "/train_log.jsonl")) fs::copy_file(dir + "/train_log.jsonl", tmp + "/train_log.jsonl");
    std::ofstream(tmp + "/train_log.jsonl", std::ios::app) << log;
  }
  if (rank != 0) untrack_output_temporary(tmp);  // rank 0 renames it now: no rank may remove it any more
  host.all_reduce_sum(sync);
  if (rank == 0) output->commit();
  host.all_reduce_sum(sync);
}

// The Switch Transformer load-balancing loss of every MoE layer: E * sum_e f_e P_e,
// f_e the share of routed slots, P_e the mean router probability.
class BalanceLoss : public RoutingObserver {
 public:
  at::Tensor total;
  void on_routing(const MoeLayer& layer, const at::Tensor&, const Routing& r) override {
    const int64_t E = layer.num_experts;
    at::Tensor f = at::bincount(r.experts.reshape({-1}), {}, E).to(at::kFloat) /
                   static_cast<double>(std::max<int64_t>(r.experts.numel(), 1));
    at::Tensor loss = static_cast<double>(E) * (f * r.scores.mean(0)).sum();
    total = total.defined() ? total + loss : loss;
  }
};

// The training streams: each file's records, joined, as one token stream.
std::vector<std::vector<int64_t>> read_streams(const TrainOptions& o) {
  auto tokenizer = make_tokenizer(o.tokenizer);
  SMOE_CHECK_INPUT(tokenizer->vocab_size() <= o.vocab, "--vocab ", o.vocab, " is smaller than the tokenizer's ",
                   tokenizer->vocab_size(), " ids (", tokenizer->name(), ")");
  std::vector<std::vector<int64_t>> streams;
  for (const auto& path : o.data) {
    std::vector<int64_t> stream;
    for (const auto& d : read_corpus(path, *tokenizer, o.vocab)) stream.insert(stream.end(), d.tokens.begin(), d.tokens.end());
    SMOE_CHECK_INPUT(static_cast<int64_t>(stream.size()) > o.context + 1, path, ": holds ", stream.size(),
                     " tokens, fewer than --context + 2");
    streams.push_back(std::move(stream));
  }
  return streams;
}

// The step a resumed run continues from, from trainer_state.json, checked against this run.
int64_t resume_step(const TrainOptions& o, int ranks) {
  const std::string state_path = o.out + "/trainer_state.json";
  const nlohmann::json state = read_json_file(state_path);
  SMOE_CHECK_INPUT(state.is_object(), state_path, ": must be a JSON object");
  const int64_t step = json_int(state, "step", state_path);
  const int64_t state_ranks = json_int(state, "ranks", 1, state_path);
  const bool state_shard = json_bool(state, "shard_experts", false, state_path);
  SMOE_CHECK_INPUT(step >= 0 && step <= o.steps, state_path, ": step ", step, " outside [0, --steps ", o.steps, "]");
  SMOE_CHECK_INPUT(state_ranks == ranks && state_shard == o.shard_experts, state_path, ": written by ", state_ranks,
                   " ranks (shard_experts ", state_shard, "); resume with the same");
  return step;
}

// Linear warm-up, then cosine to min_lr_ratio * lr.
double learning_rate(const TrainOptions& o, int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double progress = static_cast<double>(step - o.warmup) / static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup));
  return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress)));
}

// This step's global batch: the same windows for any rank count; this rank's
// slice ([per_rank, context + 1]).
at::Tensor step_batch(const TrainOptions& o, const std::vector<std::vector<int64_t>>& streams, int64_t step, int rank,
                      int64_t per_rank) {
  const int64_t S = o.context;
  at::Tensor batch = at::empty({per_rank, S + 1}, at::kLong);
  for (int64_t i = 0; i < per_rank; ++i) {
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 1000003ull +
                        static_cast<uint64_t>(rank * per_rank + i));
    const auto& stream = streams[rng() % streams.size()];
    const int64_t begin = static_cast<int64_t>(rng() % static_cast<uint64_t>(stream.size() - static_cast<size_t>(S) - 1));
    std::memcpy(batch.data_ptr<int64_t>() + i * (S + 1), stream.data() + begin, static_cast<size_t>(S + 1) * sizeof(int64_t));
  }
  return batch;
}

// The weights being trained: replicated ones (their gradients summed over ranks)
// and this rank's sharded experts.
struct Params {
  std::vector<at::Tensor> all, replicated, local_experts;
};

// Every weight of the decoder, made trainable; replicated weights start from
// rank 0's (their gradients are summed over ranks), sharded experts get their
// whole gradient on their owner, through the exchanges. `comm` moves the
// weights' device tensors.
Params trainable(const Decoder& decoder, Communicator& comm, bool shard_experts) {
  Params params;
  for (const auto& [name, t] : decoder.named_parameters()) {
    at::Tensor p = t;
    const bool sharded = shard_experts && is_expert(name);
    if (!sharded) comm.broadcast(p, 0);
    p.set_requires_grad(true);
    params.all.push_back(p);
    (sharded ? params.local_experts : params.replicated).push_back(p);
  }
  return params;
}

// The step's loss on this rank's slice `batch` ([n, context + 1]): cross-entropy
// over the global batch plus the balance loss; backward() takes its gradients.
// Returns this rank's summed cross-entropy and balance loss.
std::pair<double, double> forward_backward(const Decoder& decoder, MoeExecutor& executor, const at::Tensor& batch,
                                           const TrainOptions& o, int ranks) {
  const int64_t S = o.context;
  const at::Tensor inputs = batch.narrow(1, 0, S), targets = batch.narrow(1, 1, S);
  BalanceLoss balance;
  at::Tensor logits = decoder.forward(inputs, executor, &balance);
  at::Tensor ce_sum = at::cross_entropy_loss(logits.reshape({-1, o.vocab}), targets.reshape({-1}).to(logits.device()),
                                             {}, at::Reduction::Sum);
  at::Tensor loss = ce_sum / static_cast<double>(o.batch * S);
  if (balance.total.defined()) loss = loss + o.aux_loss * balance.total / static_cast<double>(o.layers * ranks);
  loss.backward();
  return {ce_sum.item<double>(), balance.total.defined() ? balance.total.item<double>() : 0.0};
}

// Data parallel: sums the replicated weights' gradients over ranks (one flat
// buffer, over `comm`, the device's communicator), then clips by the global
// gradient norm (sharded experts' parts summed over ranks, over `host`).
void reduce_and_clip(Params& params, Communicator& comm, Communicator& host, const TrainOptions& o) {
  for (auto& p : params.all)
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
  std::vector<at::Tensor> grads;
  for (auto& p : params.replicated) grads.push_back(p.grad().reshape({-1}));
  at::Tensor flat = at::cat(grads);
  comm.all_reduce_sum(flat);
  int64_t offset = 0;
  for (auto& p : params.replicated) {
    p.mutable_grad().copy_(flat.narrow(0, offset, p.numel()).view_as(p));
    offset += p.numel();
  }
  double replicated_sq = 0, local_expert_sq = 0;
  for (auto& p : params.replicated) replicated_sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  for (auto& p : params.local_experts) local_expert_sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  at::Tensor expert_sq = at::tensor({local_expert_sq}, at::kDouble);
  if (o.shard_experts) host.all_reduce_sum(expert_sq);
  const double norm = std::sqrt(replicated_sq + expert_sq.item<double>());
  if (norm > o.clip)
    for (auto& p : params.all) p.mutable_grad().mul_(o.clip / (norm + 1e-6));
}

}  // namespace

void check_options(const TrainOptions& o, int ranks) {
  auto in = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
    SMOE_CHECK_INPUT(v >= lo && v <= hi, "--", name, " must lie in [", lo, ", ", hi, "], found ", v);
  };
  in("experts", o.experts, 1, 4096);
  in("top-k", o.top_k, 1, o.experts);
  in("hidden", o.hidden, 1, 65536);
  in("layers", o.layers, 1, 1024);
  in("heads", o.heads, 1, o.hidden);
  in("kv-heads", o.kv_heads, 1, o.heads);
  in("ffn", o.ffn, 1, 1 << 20);
  in("vocab", o.vocab, 256, 1 << 24);
  in("context", o.context, 2, 1 << 20);
  in("batch", o.batch, 1, 1 << 24);
  in("steps", o.steps, 1, int64_t{1} << 40);
  in("warmup", o.warmup, 0, int64_t{1} << 40);
  in("log-every", o.log_every, 1, int64_t{1} << 40);
  in("checkpoint-every", o.checkpoint_every, 0, int64_t{1} << 40);
  SMOE_CHECK_INPUT(o.batch % ranks == 0, "--batch ", o.batch, " must divide over the ", ranks, " ranks");
  SMOE_CHECK_INPUT(o.hidden % o.heads == 0 && o.heads % o.kv_heads == 0,
                   "--hidden must divide by --heads, and --heads by --kv-heads");
  SMOE_CHECK_INPUT(o.lr >= 0 && o.clip > 0 && o.weight_decay >= 0 && o.aux_loss >= 0, "--clip must be positive; "
                   "--lr, --weight-decay and --aux-loss not negative");
  SMOE_CHECK_INPUT(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, "--min-lr-ratio must lie in [0, 1]");
  SMOE_CHECK_INPUT(!o.data.empty(), "give training data (--data FILE or --suite DIR)");
}

// The training files: --data as given, then every <task>/train.jsonl of --suite.
std::vector<std::string> training_files(const TrainOptions& o) {
  std::vector<std::string> files = o.data;
  if (o.suite.empty()) return files;
  SMOE_CHECK_INPUT(fs::is_directory(o.suite), o.suite, ": not a folder");
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(o.suite))
    if (fs::exists(entry.path() / "train.jsonl")) found.push_back((entry.path() / "train.jsonl").string());
  std::sort(found.begin(), found.end());
  SMOE_CHECK_INPUT(!found.empty(), o.suite, ": holds no <task>/train.jsonl");
  files.insert(files.end(), found.begin(), found.end());
  return files;
}

JobEnd train(const TrainOptions& options, JobContext& ctx) {
  checkpoint_on_stop();
  TrainOptions o = options;
  o.out = normalise_output_path(o.out, "--out");
  o.data = training_files(o);
  Communicator& host = ctx.host();
  const int rank = host.rank(), ranks = host.size();
  check_options(o, ranks);
  // The output's place is checked (and found writable) before any work.
  if (rank == 0) AtomicOutput check(train_output(o));

  const std::vector<std::vector<int64_t>> streams = read_streams(o);

  // Weights: from the last checkpoint when resuming, else freshly initialised.
  const bool resuming = o.resume && fs::exists(o.out + "/trainer_state.json");
  int64_t step = resuming ? resume_step(o, ranks) : 0;
  std::unique_ptr<Checkpoint> checkpoint;
  if (resuming) checkpoint = std::make_unique<Checkpoint>(o.out);
  const ModelConfig config = resuming ? checkpoint->config() : parse_model_config(model_config(o), o.out + "/config.json");
  const ExpertPlacement placement = ExpertPlacement::contiguous(config, ranks);
  DecoderOptions dopts{at::kFloat, ctx.device(), {}};  // float32 weights and optimizer state on any device
  dopts.trainable = true;
  if (o.shard_experts) dopts.holds_expert = [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; };
  Decoder decoder = resuming ? Decoder(*checkpoint, dopts) : Decoder(config, initial_weights(o), dopts);
  Params params = trainable(decoder, ctx.comm(), o.shard_experts);
  torch::optim::AdamW optimizer(params.all, torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(o.weight_decay));
  const std::string optimizer_file = o.out + "/optimizer-" + std::to_string(rank) + ".pt";
  if (resuming && fs::exists(optimizer_file)) torch::load(optimizer, optimizer_file);

  LocalMoeExecutor local;
  ExpertParallelExecutor parallel(ctx.comm(), placement, 0.0, ctx.expert_gemms());
  MoeExecutor& executor = o.shard_experts ? static_cast<MoeExecutor&>(parallel) : local;
  const int64_t per_rank = o.batch / ranks, S = o.context;
  std::string log;  // loss lines since the last checkpoint (rank 0)
  double last_loss = 0;
  auto start = std::chrono::steady_clock::now();
  int64_t tokens_since = 0;
  for (; step < o.steps; ++step) {
    const double lr = learning_rate(o, step);
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

    optimizer.zero_grad();
    const std::pair<double, double> losses =
        forward_backward(decoder, executor, step_batch(o, streams, step, rank, per_rank), o, ranks);
    reduce_and_clip(params, ctx.comm(), host, o);
    optimizer.step();

    const double global_tokens = static_cast<double>(o.batch * S);
    at::Tensor sums = at::tensor({losses.first, losses.second, stop_requested() ? 1.0 : 0.0}, at::kDouble);
    host.all_reduce_sum(sums);
    const bool stop = sums[2].item<double>() > 0;
    last_loss = sums[0].item<double>() / global_tokens;
    tokens_since += o.batch * S;
    if (rank == 0) {
      log += nlohmann::json({{"step", step + 1}, {"loss", last_loss}, {"lr", lr},
                             {"balance", sums[1].item<double>() / (o.layers * ranks)}}).dump() + "\n";
      if ((step + 1) % o.log_every == 0 || step + 1 == o.steps) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        log_info(str("train: step ", step + 1, "/", o.steps, ", loss ", last_loss, ", lr ", lr, ", ",
                     static_cast<int64_t>(static_cast<double>(tokens_since) / std::max(secs, 1e-9)), " tokens/s"));
        start = std::chrono::steady_clock::now();
        tokens_since = 0;
      }
    }
    if ((o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0) || step + 1 == o.steps || stop) {
      save(o.out, o, decoder, optimizer, step + 1, host, placement, log);
      log.clear();
      if (stop) {
        log_info(str("train: stopped by a signal after step ", step + 1, "; checkpoint in ", o.out));
        return JobEnd::Checkpointed;
      }
    }
  }
  log_info(str("train: final loss ", last_loss, "; wrote ", o.out));
  return JobEnd::Done;
}

}  // namespace smoe
