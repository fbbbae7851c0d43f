#include "smoe/eval/eval-job.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/hash.h"
#include "smoe/core/log.h"
#include "smoe/eval/evaluator.h"
#include "smoe/eval/statistics.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "smoe/model/resources.h"
#include "smoe/parallel/ep-executor.h"
#include "smoe/parallel/job.h"
#include "smoe/parallel/placement.h"
#include "smoe/text/tokenizer.h"

namespace smoe {

namespace {

// The task's results in lm-evaluation-harness's layout: each metric and its
// standard error ("acc,none", "acc_stderr,none", ...), for the record kinds the
// task holds.
nlohmann::json task_results(const std::string& name, const TaskSamples& samples) {
  nlohmann::json r = {{"alias", name}};
  for (const std::string& metric : metric_names()) {
    const Estimate e = estimate(metric, {&samples});
    if (!e.defined) continue;
    const std::string base = metric.substr(0, metric.find(','));
    r[metric] = e.value;
    r[base + "_stderr,none"] = e.se;
  }
  return r;
}

// Per-example scores, column by column, so that `smoe report` can pair two
// models on the same examples.
nlohmann::json samples_json(const TaskSamples& s) {
  nlohmann::json j = nlohmann::json::object();
  if (!s.text_line.empty())
    j["text"] = {{"line", s.text_line}, {"nll", s.nll}, {"tokens", s.tokens}, {"bytes", s.bytes}};
  if (!s.choice_line.empty()) j["multiple_choice"] = {{"line", s.choice_line}, {"acc", s.acc}, {"acc_norm", s.acc_norm}};
  if (!s.generate_line.empty())
    j["generate"] = {{"line", s.generate_line}, {"exact_match", s.exact_match}, {"generated", s.generated}};
  return j;
}

// What the model costs: routed-expert parameters per layer and in all, and the
// bytes of its weight files.
nlohmann::json model_cost(const Checkpoint& checkpoint) {
  const ModelConfig& config = checkpoint.config();
  const ParameterCounts counts = count_parameters(config);
  std::vector<double> per_layer;
  for (int64_t e : config.layer_experts) per_layer.push_back(static_cast<double>(e) * counts.per_expert);
  uint64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(checkpoint.dir()))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") bytes += entry.file_size();
  return {{"expert_parameters", counts.routed_experts},
          {"expert_parameters_per_layer", per_layer},
          {"parameters", counts.total()},
          {"checkpoint_bytes", bytes}};
}

// smoe's own record: the model, its cost, the plan it was pruned by, the labels.
nlohmann::json smoe_record(const EvalOptions& o, const Checkpoint& checkpoint, const JobContext& ctx) {
  const ModelConfig& config = checkpoint.config();
  nlohmann::json plan = nlohmann::json::object(), labels = nlohmann::json::object();
  for (const auto& [k, v] : checkpoint.metadata())
    if (k.rfind("smoe_", 0) == 0) plan[k] = v;
  for (const auto& [k, v] : o.labels) labels[k] = v;
  return {{"job", "eval"},
          {"software", ctx.provenance().at("software")},
          {"created", ctx.provenance().at("created")},
          {"model", checkpoint.dir()},
          {"model_type", config.model_type},
          {"model_config_sha256", sha256_file(checkpoint.dir() + "/config.json")},
          {"experts_per_layer", config.layer_experts},
          {"top_k", config.router.top_k},
          {"cost", model_cost(checkpoint)},
          {"plan", plan},
          {"labels", labels}};
}

}  // namespace

void evaluate_model(const EvalOptions& o, JobContext& ctx) {
  SMOE_CHECK_INPUT(o.context >= 2, "--context must be at least 2");
  OutputSpec spec = json_output(o.out, "eval");
  spec.overwrite = o.overwrite;
  spec.inputs = o.inputs;
  for (const auto& task : o.tasks) {
    check_input_file(task.second, "eval file");
    spec.inputs.push_back(task.second);
  }
  const std::string temp = ctx.add_output(spec);
  Checkpoint checkpoint(o.model);
  const ModelConfig& config = checkpoint.config();
  const int rank = ctx.rank();
  const ExpertPlacement placement = ExpertPlacement::from_option(o.placement, config, ctx.ranks());
  Decoder decoder(checkpoint, {scalar_type(o.dtype), ctx.device(),
                               [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; }});
  ExpertParallelExecutor executor(ctx.comm(), placement, 0.0, ctx.expert_gemms());
  auto tokenizer = make_tokenizer(o.tokenizer, checkpoint.dir());

  nlohmann::json results = nlohmann::json::object(), n_samples = nlohmann::json::object(),
                 samples = nlohmann::json::object();
  for (const auto& [name, path] : o.tasks) {
    std::vector<EvalRecord> records = read_eval_records(path, *tokenizer, config.vocab_size, o.context, rank, ctx.ranks());
    const TaskSamples t = evaluate(decoder, executor, ctx.host(), *tokenizer, records, o.context);
    results[name] = task_results(name, t);
    const auto records_total = static_cast<int64_t>(t.choice_line.size() + t.generate_line.size());
    double tokens = 0;
    for (double n : t.tokens) tokens += n;
    n_samples[name] = {{"original", records_total}, {"effective", records_total}, {"tokens", static_cast<int64_t>(tokens)}};
    samples[name] = samples_json(t);
    log_info(str("eval ", name, ": ", results[name].dump()));
  }
  const nlohmann::json out = {
      {"results", results},
      {"n-samples", n_samples},
      {"samples", samples},
      {"config",
       {{"model", "smoe"}, {"model_args", "pretrained=" + checkpoint.dir()},
        {"dtype", choice_name(dtype_names(), o.dtype)}, {"device", ctx.device_name()}, {"ranks", ctx.ranks()},
        {"context", o.context}}},
      {"smoe", smoe_record(o, checkpoint, ctx)}};
  if (rank == 0) write_json_file(temp, out);
  ctx.commit_outputs();
  log_info("eval: wrote " + ctx.output_path(0));
}

}  // namespace smoe
