#include "smoe/eval/score.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/io/outputs.h"
#include "smoe/io/tensor-io.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "smoe/parallel/ep-executor.h"
#include "smoe/parallel/job.h"
#include "smoe/parallel/placement.h"
#include "smoe/parallel/share-corpus.h"
#include "smoe/text/corpus.h"
#include "smoe/text/tokenizer.h"

namespace smoe {

namespace {

// Keeps each MoE layer's expert choices, batch by batch.
class RoutingRecorder : public RoutingObserver {
 public:
  void on_routing(const MoeLayer& layer, const at::Tensor&, const Routing& r) override {
    choices_[layer.layer].push_back(r.experts.cpu());
  }
  std::map<int64_t, std::vector<at::Tensor>>& choices() { return choices_; }

 private:
  std::map<int64_t, std::vector<at::Tensor>> choices_;
};

// Sequences gathered on rank 0 come in rank order; `meta` holds (document,
// piece, length) per sequence. Returns the sequences' indices in corpus order.
std::vector<int64_t> sequence_order(const at::Tensor& meta) {
  auto m = meta.accessor<int64_t, 2>();
  std::vector<int64_t> order(static_cast<size_t>(meta.size(0)));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return m[a][0] != m[b][0] ? m[a][0] < m[b][0] : m[a][1] < m[b][1]; });
  return order;
}

// `rows` holds the sequences' rows end to end, in gathered order; returns them in corpus order.
at::Tensor corpus_order(const at::Tensor& meta, const at::Tensor& rows) {
  auto m = meta.accessor<int64_t, 2>();
  std::vector<int64_t> start(static_cast<size_t>(meta.size(0)));
  int64_t offset = 0;
  for (size_t i = 0; i < start.size(); ++i) {
    start[i] = offset;
    offset += m[static_cast<int64_t>(i)][2];
  }
  std::vector<int64_t> index;
  index.reserve(static_cast<size_t>(offset));
  for (int64_t i : sequence_order(meta))
    for (int64_t j = 0; j < m[i][2]; ++j) index.push_back(start[static_cast<size_t>(i)] + j);
  return rows.index_select(0, at::tensor(index, at::kLong));
}

at::Tensor rows_or(const std::vector<at::Tensor>& parts, const at::Tensor& empty) {
  return parts.empty() ? empty : at::cat(parts, 0);
}

void check_options(const ScoreOptions& o, int ranks) {
  SMOE_CHECK_INPUT(o.context >= 2, "--context must be at least 2, found ", o.context);
  SMOE_CHECK_INPUT(o.batch >= 1, "--batch must be at least 1, found ", o.batch);
  SMOE_CHECK_INPUT(o.capacity_factor >= 0, "--capacity-factor must not be negative, found ", o.capacity_factor);
  SMOE_CHECK_INPUT(o.executor != ExecutorKind::Local || ranks == 1,
                   "--executor local runs every expert in one process; with ", ranks, " ranks use expert-parallel");
}

// What the run keeps for --logits: every sequence's logits, tokens and identity.
struct Kept {
  RoutingRecorder recorder;
  std::vector<at::Tensor> logits, tokens;
  std::vector<int64_t> meta;  // (document, piece, length) of each sequence run
};

class ScoreRun {
 public:
  ScoreRun(const ScoreOptions& o, JobContext& ctx)
      : o_(o),
        ctx_(ctx),
        parallel_(o.executor == ExecutorKind::ExpertParallel ||
                  (o.executor == ExecutorKind::Auto && (ctx.ranks() > 1 || o.capacity_factor > 0))),
        temp_(o.logits.empty() ? "" : open_logits(o, ctx)),
        checkpoint_(o.model),
        config_(checkpoint_.config()),
        placement_(ExpertPlacement::from_option(o.placement, config_, ctx.ranks())),
        decoder_(checkpoint_, decoder_options()),
        tokenizer_(make_tokenizer(o.tokenizer, checkpoint_.dir())) {
    if (parallel_) {
      auto e =
          std::make_unique<ExpertParallelExecutor>(ctx.comm(), placement_, o.capacity_factor, ctx.expert_gemms());
      ep_ = e.get();
      executor_ = std::move(e);
    } else {
      executor_ = std::make_unique<LocalMoeExecutor>();
    }
  }

  ScoreResult run();

 private:
  static std::string open_logits(const ScoreOptions& o, JobContext& ctx);
  DecoderOptions decoder_options() const;
  void step(const std::vector<Sequence>& seqs, double* nll_sum, int64_t* predicted);
  void write_logits();

  const ScoreOptions& o_;
  JobContext& ctx_;
  const bool parallel_;
  const std::string temp_;
  Checkpoint checkpoint_;
  const ModelConfig& config_;
  ExpertPlacement placement_;
  Decoder decoder_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<MoeExecutor> executor_;
  ExpertParallelExecutor* ep_ = nullptr;
  Kept kept_;
};

std::string ScoreRun::open_logits(const ScoreOptions& o, JobContext& ctx) {
  OutputSpec spec = safetensors_output(o.logits, "score");
  spec.option = "--logits";
  spec.overwrite = o.overwrite;
  spec.inputs = o.inputs;
  for (const std::string& file : corpus_files(o.corpus)) spec.inputs.push_back(file);
  return ctx.add_output(spec);
}

DecoderOptions ScoreRun::decoder_options() const {
  DecoderOptions d{scalar_type(o_.dtype), ctx_.device(), {}};
  const int rank = ctx_.rank();
  if (parallel_) d.holds_expert = [this, rank](int64_t l, int64_t e) { return placement_.owner(l, e) == rank; };
  return d;
}

// One batch (possibly empty: this rank has run out, but still takes part in the
// exchanges): its negative log-likelihood, and for --logits what it produced.
void ScoreRun::step(const std::vector<Sequence>& seqs, double* nll_sum, int64_t* predicted) {
  const bool keep = !temp_.empty();
  const int64_t B = static_cast<int64_t>(seqs.size()), S = B > 0 ? static_cast<int64_t>(seqs[0].tokens.size()) : 2;
  at::Tensor tokens = at::empty({B, S}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const Sequence& q = seqs[static_cast<size_t>(b)];
    std::memcpy(tokens[b].data_ptr<int64_t>(), q.tokens.data(), static_cast<size_t>(S) * sizeof(int64_t));
    if (keep) kept_.meta.insert(kept_.meta.end(), {q.document, q.piece, S});
  }
  at::Tensor logits = decoder_.forward(tokens, *executor_, keep ? &kept_.recorder : nullptr).cpu();
  if (B == 0) return;
  at::Tensor logp = at::log_softmax(logits.narrow(1, 0, S - 1), -1);
  at::Tensor target = tokens.narrow(1, 1, S - 1).unsqueeze(-1);
  *nll_sum -= logp.gather(-1, target).sum().to(at::kDouble).item<double>();
  *predicted += B * (S - 1);
  if (keep) {
    kept_.logits.push_back(logits.reshape({B * S, -1}));
    kept_.tokens.push_back(tokens.reshape({-1}));
  }
}

// Every rank's logits, tokens and routing choices, gathered on rank 0 and
// written in corpus order.
void ScoreRun::write_logits() {
  Communicator& host = ctx_.host();
  const at::Tensor g_meta = host.gather_rows(at::tensor(kept_.meta, at::kLong).view({-1, 3}), 0);
  const at::Tensor g_logits = host.gather_rows(rows_or(kept_.logits, at::empty({0, config_.vocab_size}, at::kFloat)), 0);
  const at::Tensor g_tokens = host.gather_rows(rows_or(kept_.tokens, at::empty({0}, at::kLong)), 0);
  std::map<int64_t, at::Tensor> g_routing;
  for (int64_t l = 0; l < config_.num_layers; ++l)
    if (config_.is_moe(l))
      g_routing[l] = host.gather_rows(
          rows_or(kept_.recorder.choices()[l], at::empty({0, config_.router.top_k}, at::kLong)), 0);
  if (ctx_.rank() == 0) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    out.emplace_back("logits", corpus_order(g_meta, g_logits));
    out.emplace_back("tokens", corpus_order(g_meta, g_tokens));
    std::vector<int64_t> lengths;
    for (int64_t i : sequence_order(g_meta)) lengths.push_back(g_meta[i][2].item<int64_t>());
    out.emplace_back("sequence_lengths", at::tensor(lengths, at::kLong));
    for (auto& [layer, t] : g_routing)
      out.emplace_back("routing.layer" + std::to_string(layer) + ".experts", corpus_order(g_meta, t));
    save_safetensors(temp_, out,
                     {{"smoe_job", "score"},
                      {"model", checkpoint_.dir()},
                      {"corpus", o_.corpus},
                      {"dtype", choice_name(dtype_names(), o_.dtype)},
                      {"ranks", std::to_string(ctx_.ranks())}});
  }
  ctx_.commit_outputs();
  log_info("score: wrote " + ctx_.output_path(0));
}

// Streams this rank's part, one batch at a time, every rank in every step until none has another.
ScoreResult ScoreRun::run() {
  const CorpusPart part = share_corpus(o_.corpus, *tokenizer_, config_.vocab_size, 0, ctx_.host());
  CorpusReader reader(o_.corpus, *tokenizer_, config_.vocab_size, part);
  BatchReader batches(reader, o_.context, o_.batch);
  log_info(str("score: ", family_name(config_.family), " model ", checkpoint_.dir(), " (",
               decoder_.parameter_bytes() / 1e6, " MB of parameters on rank 0, ", choice_name(dtype_names(), o_.dtype),
               " on ", ctx_.device_name(), ", ", ctx_.ranks(), " rank(s) x ", ctx_.threads(), " threads, ",
               parallel_ ? "expert-parallel" : "local", " experts)"));
  c10::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  double nll_sum = 0.0;
  int64_t predicted = 0;
  std::vector<Sequence> seqs;
  bool mine = batches.next(&seqs);
  for (;;) {
    at::Tensor any = at::tensor({static_cast<int64_t>(mine)}, at::kLong);
    ctx_.host().all_reduce_sum(any);
    if (any.item<int64_t>() == 0) break;
    if (!mine) seqs.clear();
    step(seqs, &nll_sum, &predicted);
    mine = mine && batches.next(&seqs);
  }
  ScoreResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  at::Tensor totals = at::tensor({nll_sum, static_cast<double>(predicted)}, at::kDouble);
  ctx_.host().all_reduce_sum(totals);
  r.predicted = static_cast<int64_t>(totals[1].item<double>());
  SMOE_CHECK_INPUT(r.predicted > 0, o_.corpus, ": no record holds two or more tokens: nothing to score");
  r.nll = totals[0].item<double>() / totals[1].item<double>();
  if (ep_) {
    at::Tensor slots = at::tensor({ep_->dropped_slots(), ep_->routed_slots()}, at::kLong);
    ctx_.host().all_reduce_sum(slots);
    r.dropped_slots = slots[0].item<int64_t>();
    r.routed_slots = slots[1].item<int64_t>();
    log_info(str("score: rank 0 spent ", ep_->exchange_seconds(), " s of ", r.seconds, " s in token exchanges"));
  }
  log_info(str("score: ", r.predicted, " predicted tokens in ", r.seconds, " s"));
  if (!temp_.empty()) write_logits();
  return r;
}

}  // namespace

ScoreResult score(const ScoreOptions& options, JobContext& context) {
  check_options(options, context.ranks());
  return ScoreRun(options, context).run();
}

}  // namespace smoe
