#include "smoe/stats/collect.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/hash.h"
#include "smoe/core/log.h"
#include "smoe/core/progress.h"
#include "smoe/core/signals.h"
#include "smoe/io/hdf5.h"
#include "smoe/io/outputs.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "smoe/parallel/ep-executor.h"
#include "smoe/parallel/job.h"
#include "smoe/parallel/placement.h"
#include "smoe/parallel/share-corpus.h"
#include "smoe/stats/collector.h"
#include "smoe/stats/stats-file.h"
#include "smoe/text/corpus.h"
#include "smoe/text/tokenizer.h"

namespace smoe {

namespace {

using Clock = std::chrono::steady_clock;

// The tokens of one batch ([B, S]; [0, 2] when empty) and their identities.
struct Batch {
  at::Tensor tokens, document, position;
};

Batch make_batch(const std::vector<Sequence>& seqs, int64_t context) {
  Batch out;
  if (seqs.empty()) {
    out.tokens = at::empty({0, 2}, at::kLong);
    out.document = out.position = at::empty({0}, at::kLong);
    return out;
  }
  const int64_t B = static_cast<int64_t>(seqs.size()), S = static_cast<int64_t>(seqs[0].tokens.size());
  out.tokens = at::empty({B, S}, at::kLong);
  out.document = at::empty({B * S}, at::kLong);
  out.position = at::empty({B * S}, at::kLong);
  // Raw pointers: indexing a tensor element by element costs microseconds a token.
  int64_t* tok = out.tokens.data_ptr<int64_t>();
  int64_t* doc = out.document.data_ptr<int64_t>();
  int64_t* pos = out.position.data_ptr<int64_t>();
  for (int64_t r = 0; r < B; ++r) {
    const Sequence& q = seqs[static_cast<size_t>(r)];
    for (int64_t t = 0; t < S; ++t) {
      tok[r * S + t] = q.tokens[static_cast<size_t>(t)];
      doc[r * S + t] = q.document;
      pos[r * S + t] = q.piece * context + t;
    }
  }
  return out;
}

void check_options(const CollectOptions& o) {
  SMOE_CHECK_INPUT(o.context >= 2, "--context must be at least 2, found ", o.context);
  SMOE_CHECK_INPUT(o.batch >= 1, "--batch must be at least 1, found ", o.batch);
  SMOE_CHECK_INPUT(o.max_tokens >= 0, "--max-tokens must not be negative");
  SMOE_CHECK_INPUT(o.sample >= 0, "--sample must not be negative");
  SMOE_CHECK_INPUT(o.checkpoint_tokens >= 0 && o.checkpoint_minutes >= 0, "checkpoint intervals must not be negative");
}

// The statistics file's temporary, on every rank; rank 0 checks the target and
// that the working file beside it, which this run replaces and removes, is
// only ever one of collect's.
std::string open_output(const CollectOptions& o, const std::string& work, JobContext& ctx) {
  OutputSpec spec = hdf5_output(o.out, "collect", "smoe-stats");
  spec.overwrite = o.overwrite;
  spec.inputs = o.inputs;
  for (const auto& task : o.tasks)
    for (const std::string& file : corpus_files(task.second)) spec.inputs.push_back(file);
  if (ctx.rank() == 0) {
    struct stat st {};
    SMOE_CHECK_INPUT(::lstat(work.c_str(), &st) != 0 ||
                         (S_ISREG(st.st_mode) && h5::file_format(work) == "smoe-collect-checkpoint"),
                     work, " exists and is not a working file of smoe collect; remove it or choose another --out");
  }
  return ctx.add_output(spec);
}

// One run of collect over every task: the model, its statistics, and the
// agreement between ranks after every step.
class CollectRun {
 public:
  CollectRun(const CollectOptions& o, JobContext& ctx)
      : o_(o),
        ctx_(ctx),
        work_(normalise_output_path(o.out, "--out") + ".work.h5"),
        temp_(open_output(o, work_, ctx)),
        checkpoint_(o.model),
        config_(checkpoint_.config()),
        placement_(ExpertPlacement::from_option(o.placement, config_, ctx.ranks())),
        decoder_(checkpoint_, decoder_options()),
        executor_(ctx.comm(), placement_, o.capacity_factor, ctx.expert_gemms()),
        tokenizer_(make_tokenizer(o.tokenizer, checkpoint_.dir())) {}

  JobEnd run();

 private:
  // What all ranks agree on between steps.
  struct Step {
    int64_t tokens = 0;           // run by this rank in the step
    bool more = false;            // this rank has another batch (already read)
    int64_t read = 0, share = 0;  // this rank's part of the corpus: read so far, all of it
  };
  struct TaskRun {
    int64_t task;
    Progress progress;
    int64_t done = 0;  // over all ranks: tokens (streaming) or tokens x layers (layerwise)
  };

  DecoderOptions decoder_options() const;
  void start_tasks();
  bool sync(const Step& step, int64_t phase, TaskRun& tr, bool* any_more);
  bool stream(TaskRun& tr, BatchReader& batches, const CorpusReader& reader, const CorpusPart& part, int64_t first);
  bool layerwise(TaskRun& tr, BatchReader& batches, int64_t first);
  void finish_task(TaskRun& tr, const BatchReader& batches);
  void report(double seconds);

  const CollectOptions& o_;
  JobContext& ctx_;
  const std::string work_, temp_;
  Checkpoint checkpoint_;
  const ModelConfig& config_;
  ExpertPlacement placement_;
  Decoder decoder_;
  ExpertParallelExecutor executor_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<TaskStats> tasks_;
  std::string fingerprint_;
  Provenance provenance_;
  int64_t tokens_run_ = 0;  // over all ranks, this run (not counting a resumed part)
  int64_t since_checkpoint_ = 0;
  Clock::time_point last_checkpoint_ = Clock::now();
};

DecoderOptions CollectRun::decoder_options() const {
  const int rank = ctx_.rank();
  DecoderOptions d{scalar_type(o_.dtype), ctx_.device(),
                   [this, rank](int64_t l, int64_t e) { return placement_.owner(l, e) == rank; }};
  d.load_layers = o_.schedule == Schedule::Default;
  d.load_head = false;
  return d;
}

// The tasks' collectors, the run's fingerprint (what a resumed run must share)
// and the file's provenance, from rank 0 so every rank writes the same.
void CollectRun::start_tasks() {
  const std::string config_sha = sha256_file(checkpoint_.dir() + "/config.json");
  nlohmann::json fp = {{"config_sha256", config_sha},
                       {"dtype", choice_name(dtype_names(), o_.dtype)},
                       {"context", o_.context},
                       {"batch", o_.batch},
                       {"max_tokens", o_.max_tokens},
                       {"out_mean", o_.out_mean},
                       {"sample", o_.sample},
                       {"seed", o_.seed},
                       {"schedule", choice_name(schedule_names(), o_.schedule)},
                       {"tokenizer", tokenizer_->name()}};
  const CollectorOptions copts{o_.out_mean, o_.sample, o_.seed};
  for (const auto& [name, corpus] : o_.tasks) {
    TaskStats task;
    task.name = name;
    task.corpus = corpus;
    if (ctx_.rank() == 0) task.corpus_sha256 = corpus_sha256(corpus);
    ctx_.host().broadcast(task.corpus_sha256, 0);
    task.collector = std::make_unique<StatsCollector>(config_, copts, &ctx_.comm());
    fp["tasks"].push_back({name, task.corpus_sha256});
    tasks_.push_back(std::move(task));
  }
  fingerprint_ = sha256_hex(fp.dump());
  provenance_ = ctx_.provenance();
  provenance_["model"] = checkpoint_.dir();
  provenance_["model_type"] = config_.model_type;
  provenance_["model_config_sha256"] = config_sha;
  provenance_["options"] = fp.dump();
  provenance_["schedule"] = choice_name(schedule_names(), o_.schedule);
  provenance_["dtype"] = choice_name(dtype_names(), o_.dtype);
}

// Between steps all ranks agree on the tokens done, whether any has another
// batch, how much of the corpus is read, and whether to checkpoint or stop (one
// all-reduce). Returns true when the job stops.
bool CollectRun::sync(const Step& step, int64_t phase, TaskRun& tr, bool* any_more) {
  since_checkpoint_ += step.tokens;
  const double minutes = std::chrono::duration<double>(Clock::now() - last_checkpoint_).count() / 60.0;
  const bool due = (o_.checkpoint_tokens > 0 && since_checkpoint_ >= o_.checkpoint_tokens) ||
                   (o_.checkpoint_minutes > 0 && minutes >= o_.checkpoint_minutes);
  at::Tensor flags = at::tensor({step.tokens, static_cast<int64_t>(due), static_cast<int64_t>(stop_requested()),
                                 static_cast<int64_t>(step.more), step.read, step.share},
                                at::kLong);
  ctx_.host().all_reduce_sum(flags);
  const int64_t* f = flags.data_ptr<int64_t>();
  tr.done += f[0];
  if (any_more) *any_more = f[3] > 0;
  // Streaming: the total estimated from the share of the corpus read so far.
  if (o_.schedule == Schedule::Default && f[4] > 0)
    tr.progress.set_total(static_cast<int64_t>(tr.done * (static_cast<double>(f[5]) / f[4])), true);
  tr.progress.update(tr.done);
  const bool stop = f[2] > 0;
  if (f[1] > 0 || stop) {
    write_checkpoint(work_, ctx_, fingerprint_, tr.task, phase, tasks_);
    since_checkpoint_ = 0;
    last_checkpoint_ = Clock::now();
    log_info(str("collect: checkpoint written to ", work_, " (task '", tasks_[static_cast<size_t>(tr.task)].name,
                 "', ", o_.schedule == Schedule::Layerwise ? "layer " : "step ", phase, ")"));
  }
  return stop;
}

// The default schedule: streams this rank's part, one batch in memory. Every
// rank takes part in every step, with an empty batch once its own part is
// done, until none has another. Steps done before a resume are read again, not run.
bool CollectRun::stream(TaskRun& tr, BatchReader& batches, const CorpusReader& reader, const CorpusPart& part,
                        int64_t first) {
  StatsCollector& collector = *tasks_[static_cast<size_t>(tr.task)].collector;
  std::vector<Sequence> seqs;
  for (int64_t step = 0; step < first && batches.next(&seqs);) ++step;
  Step s;
  s.share = static_cast<int64_t>(reader.end() - part.begin);
  s.more = batches.next(&seqs);
  bool any = false;
  if (sync(s, first, tr, &any)) return true;
  for (int64_t step = first; any; ++step) {
    if (!s.more) seqs.clear();
    Batch bt = make_batch(seqs, o_.context);
    collector.set_tokens(bt.document, bt.position);
    at::Tensor h = decoder_.embed(bt.tokens);
    for (int64_t l = 0; l < config_.num_layers; ++l) h = decoder_.apply_layer(l, h, executor_, &collector);
    s.tokens = bt.tokens.numel();
    s.more = s.more && batches.next(&seqs);
    s.read = static_cast<int64_t>(reader.position() - part.begin);
    if (sync(s, step + 1, tr, &any)) return true;
  }
  return false;
}

// The layerwise schedule: holds every hidden state of this rank's part and runs
// one layer's experts at a time. Layers finished before a resume are applied
// again, unobserved, to rebuild the hidden states.
bool CollectRun::layerwise(TaskRun& tr, BatchReader& batches, int64_t first) {
  StatsCollector& collector = *tasks_[static_cast<size_t>(tr.task)].collector;
  std::vector<std::vector<Sequence>> held;
  for (std::vector<Sequence> seqs; batches.next(&seqs);) held.push_back(std::move(seqs));
  at::Tensor most = at::tensor({static_cast<int64_t>(held.size()), batches.tokens()}, at::kLong);
  at::Tensor total = most.clone();
  ctx_.host().all_reduce_max(most);
  ctx_.host().all_reduce_sum(total);
  const int64_t steps = most[0].item<int64_t>();
  tr.progress.set_total(total[1].item<int64_t>() * config_.num_layers, false);
  held.resize(static_cast<size_t>(steps));  // empty batches where this rank has run out
  // The hidden states stay in host memory whatever the device; each step's states
  // visit the device for the layer's pass.
  std::vector<at::Tensor> hidden(static_cast<size_t>(steps));
  for (int64_t step = 0; step < steps; ++step)
    hidden[static_cast<size_t>(step)] =
        decoder_.embed(make_batch(held[static_cast<size_t>(step)], o_.context).tokens).to(at::kCPU);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    decoder_.load_layer(l);
    const bool observe = l >= first;
    for (int64_t step = 0; step < steps; ++step) {
      if (observe) {
        Batch bt = make_batch(held[static_cast<size_t>(step)], o_.context);
        collector.set_tokens(bt.document, bt.position);
      }
      at::Tensor& h = hidden[static_cast<size_t>(step)];
      h = decoder_.apply_layer(l, h.to(decoder_.device()), executor_, observe ? &collector : nullptr).to(at::kCPU);
    }
    decoder_.release_layer(l);
    if (observe && sync({batches.tokens()}, l + 1, tr, nullptr)) return true;
  }
  return false;
}

void CollectRun::finish_task(TaskRun& tr, const BatchReader& batches) {
  TaskStats& task = tasks_[static_cast<size_t>(tr.task)];
  at::Tensor counts = at::tensor({batches.tokens(), batches.sequences()}, at::kLong);
  ctx_.host().all_reduce_sum(counts);
  task.tokens = counts[0].item<int64_t>();
  task.sequences = counts[1].item<int64_t>();
  SMOE_CHECK_INPUT(task.tokens > 0, task.corpus, ": corpus holds no tokens");
  const bool by_layer = o_.schedule == Schedule::Layerwise;
  tr.progress.set_total(by_layer ? task.tokens * config_.num_layers : task.tokens, false);
  tr.progress.update(tr.done, true);
  tokens_run_ += tr.done / (by_layer ? config_.num_layers : 1);
}

// Throughput, time in exchanges and every rank's peak resident memory.
void CollectRun::report(double seconds) {
  log_info(str("collect: ", tokens_run_, " tokens in ", seconds, " s: ", tokens_run_ / seconds,
               " tokens/s; rank 0 spent ", executor_.exchange_seconds(), " s (",
               100.0 * executor_.exchange_seconds() / seconds, "%) in token exchanges"));
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  at::Tensor peak = ctx_.host().all_gather(at::tensor({static_cast<int64_t>(usage.ru_maxrss)}, at::kLong));
  std::string peaks;
  for (int64_t r = 0; r < peak.size(0); ++r)
    peaks += str(r ? ", " : "", "r", r, " ", peak[r][0].item<int64_t>() / 1024, " MB");
  log_info(str("collect: peak resident memory per rank: ", peaks, " (checkpoint ", checkpoint_.total_bytes() >> 20,
               " MB)"));
}

JobEnd CollectRun::run() {
  start_tasks();
  int64_t resume_task = 0, resume_phase = 0;
  const bool by_layer = o_.schedule == Schedule::Layerwise;
  if (o_.resume && read_checkpoint(work_, ctx_.host(), fingerprint_, &resume_task, &resume_phase, tasks_))
    log_info(str("collect: resuming from ", work_, " at task '", tasks_[static_cast<size_t>(resume_task)].name, "', ",
                 by_layer ? "layer " : "step ", resume_phase));
  log_info(str("collect: ", family_name(config_.family), " model ", checkpoint_.dir(), ", ", ctx_.ranks(),
               " rank(s), ", provenance_["schedule"], " schedule, ", provenance_["dtype"], " on ", ctx_.device_name(),
               ", ", decoder_.parameter_bytes() / 1e6, " MB of parameters on rank 0"));
  c10::NoGradGuard no_grad;
  const auto started = Clock::now();
  for (int64_t t = resume_task; t < static_cast<int64_t>(tasks_.size()); ++t) {
    const TaskStats& task = tasks_[static_cast<size_t>(t)];
    const CorpusPart part = share_corpus(task.corpus, *tokenizer_, config_.vocab_size, o_.max_tokens, ctx_.host());
    CorpusReader reader(task.corpus, *tokenizer_, config_.vocab_size, part);
    BatchReader batches(reader, o_.context, o_.batch);
    TaskRun tr{t, Progress("collect " + task.name, "tokens", 0, o_.progress_seconds)};
    const int64_t first = t == resume_task ? resume_phase : 0;
    if (by_layer ? layerwise(tr, batches, first) : stream(tr, batches, reader, part, first)) return JobEnd::Checkpointed;
    finish_task(tr, batches);
  }
  report(std::chrono::duration<double>(Clock::now() - started).count());
  for (auto& task : tasks_) task.collector->reduce(ctx_.host());
  write_stats_file(temp_, ctx_.host(), provenance_, tasks_);
  ctx_.commit_output(temp_);
  if (ctx_.rank() == 0) {
    std::remove(work_.c_str());
    log_info("collect: wrote " + ctx_.output_path(0));
  }
  return JobEnd::Done;
}

}  // namespace

JobEnd collect(const CollectOptions& options, JobContext& context) {
  check_options(options);
  checkpoint_on_stop();
  return CollectRun(options, context).run();
}

}  // namespace smoe
