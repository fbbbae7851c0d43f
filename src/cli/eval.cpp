// smoe eval: scores a checkpoint on task eval sets and writes results.json in the
// layout of lm-evaluation-harness (results -> task -> "metric,none").
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <filesystem>
#include <ctime>
#include <nlohmann/json.hpp>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/hash.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/dist/comm.h"
#include "smoe/dist/ep-executor.h"
#include "smoe/dist/mpi.h"
#include "smoe/dist/placement.h"
#include "smoe/eval/evaluator.h"
#include "smoe/eval/statistics.h"
#include "smoe/io/checkpoint.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"
#include "smoe/text/tokenizer.h"
#include "smoe/model/decoder.h"
#include "smoe/model/resources.h"

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
  if (!s.generate_line.empty()) j["generate"] = {{"line", s.generate_line}, {"exact_match", s.exact_match}};
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

}  // namespace

int run_eval(int argc, char** argv) {
  po::options_description opts("smoe eval options");
  opts.add_options()("model", po::value<std::string>()->required(), "checkpoint folder (HF layout)")(
      "task", po::value<std::vector<std::string>>()->required()->composing(), "NAME=FILE: an eval set (repeatable)")(
      "out", po::value<std::string>()->required(), "results file to write (JSON)")(
      "label", po::value<std::vector<std::string>>()->composing(),
      "KEY=VALUE recorded under 'smoe.labels' (e.g. experts=8, method=uncurl, factor=2); repeatable")(
      "dtype", po::value<std::string>()->default_value("f32"), ("compute dtype: " + choice_list(dtype_names())).c_str())(
      "threads", po::value<int>()->default_value(0), "LibTorch threads per rank")(
      "context", po::value<int64_t>()->default_value(2048), "longest sequence the model sees")(
      "tokenizer", po::value<std::string>(),
      "a tokenizer.json, a tiktoken.model, a SentencePiece .model, or byte; default: the model folder's own "
      "(tokenizer.json, tiktoken.model, tokenizer.model; byte for models smoe trained)")(
      "placement", po::value<std::string>(), "expert placement map (JSON)")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"eval", "--model DIR --task NAME=FILE [--task ...] --out results.json",
                                      "Evaluates a checkpoint on eval sets: perplexity and bits per byte, "
                                      "multiple-choice accuracy, exact match of greedy generation."},
                         opts, vm))
    return 0;
  const std::string dtype_name = vm["dtype"].as<std::string>();
  const ComputeDtype dtype = parse_choice(dtype_names(), "--dtype", dtype_name);
  const int64_t context = vm["context"].as<int64_t>();
  SMOE_CHECK_INPUT(context >= 2, "--context must be at least 2");
  SMOE_CHECK_INPUT(vm["threads"].as<int>() >= 0, "--threads must not be negative");
  const auto tasks = parse_named_files(vm["task"].as<std::vector<std::string>>(), "--task");
  nlohmann::json labels = nlohmann::json::object();
  if (vm.count("label"))
    for (const auto& [key, value] : parse_named_values(vm["label"].as<std::vector<std::string>>(), "--label",
                                                        "KEY=VALUE", false))
      labels[key] = value;
  at::set_num_threads(resolve_threads(vm["threads"].as<int>()));

  std::unique_ptr<Communicator> host = make_mpi_communicator();
  const int rank = host->rank(), ranks = host->size();
  std::unique_ptr<Output> output;
  if (rank == 0) {
    OutputSpec spec = json_output(vm["out"].as<std::string>(), "eval");
    spec.overwrite = vm["overwrite"].as<bool>();
    spec.inputs = option_inputs(vm, {"model", "placement", "tokenizer"}, tasks, "eval file");
    output = std::make_unique<Output>(spec);
  }
  share_output_temporary(output.get(), MPI_COMM_WORLD);
  Checkpoint checkpoint(vm["model"].as<std::string>());
  const ModelConfig& config = checkpoint.config();
  const ExpertPlacement placement = vm.count("placement")
                                        ? ExpertPlacement::from_file(vm["placement"].as<std::string>(), config, ranks)
                                        : ExpertPlacement::contiguous(config, ranks);
  Decoder decoder(checkpoint, {scalar_type(dtype), at::kCPU,
                               [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; }});
  ExpertParallelExecutor executor(*host, placement);
  auto tokenizer = make_tokenizer(vm.count("tokenizer") ? vm["tokenizer"].as<std::string>() : "", checkpoint.dir());

  nlohmann::json results = nlohmann::json::object(), n_samples = nlohmann::json::object(),
                 samples = nlohmann::json::object();
  for (const auto& [name, path] : tasks) {
    std::vector<EvalRecord> records = read_eval_records(path, *tokenizer, config.vocab_size, context, rank, ranks);
    const TaskSamples t = evaluate(decoder, executor, *host, *tokenizer, records, context);
    results[name] = task_results(name, t);
    const auto records_total = static_cast<int64_t>(t.choice_line.size() + t.generate_line.size());
    double tokens = 0;
    for (double n : t.tokens) tokens += n;
    n_samples[name] = {{"original", records_total}, {"effective", records_total}, {"tokens", static_cast<int64_t>(tokens)}};
    samples[name] = samples_json(t);
    log_info(str("eval ", name, ": ", results[name].dump()));
  }

  const std::string created = utc_now();
  nlohmann::json plan = nlohmann::json::object();
  for (const auto& [k, v] : checkpoint.metadata())
    if (k.rfind("smoe_", 0) == 0) plan[k] = v;
  nlohmann::json out = {
      {"results", results},
      {"n-samples", n_samples},
      {"samples", samples},
      {"config",
       {{"model", "smoe"}, {"model_args", "pretrained=" + checkpoint.dir()}, {"dtype", dtype_name},
        {"ranks", ranks}, {"context", context}}},
      {"smoe",
       {{"job", "eval"},
        {"software", std::string("smoe ") + SMOE_VERSION},
        {"created", created},
        {"model", checkpoint.dir()},
        {"model_type", config.model_type},
        {"model_config_sha256", sha256_file(checkpoint.dir() + "/config.json")},
        {"experts_per_layer", config.layer_experts},
        {"top_k", config.router.top_k},
        {"cost", model_cost(checkpoint)},
        {"plan", plan},
        {"labels", labels}}}};
  if (rank == 0) {
    write_json_file(output->temp(), out);
    output->commit();
    log_info("eval: wrote " + output->path());
  }
  return 0;
}

}  // namespace smoe
