// smoe eval: scores a checkpoint on task eval sets and writes results.json in the
// layout of lm-evaluation-harness (results -> task -> "metric,none").
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
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
#include "smoe/io/checkpoint.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"
#include "smoe/io/tokenizer.h"
#include "smoe/model/decoder.h"

namespace smoe {

namespace {

// lm-evaluation-harness's standard error of a mean of 0/1 outcomes.
double stderr_of(int64_t correct, int64_t n) {
  if (n < 2) return 0.0;
  const double p = static_cast<double>(correct) / static_cast<double>(n);
  return std::sqrt(p * (1 - p) / static_cast<double>(n - 1));
}

}  // namespace

int run_eval(int argc, char** argv) {
  po::options_description opts("smoe eval options");
  opts.add_options()("model", po::value<std::string>()->required(), "checkpoint folder (HF layout)")(
      "task", po::value<std::vector<std::string>>()->required()->composing(), "NAME=FILE: an eval set (repeatable)")(
      "out", po::value<std::string>()->required(), "results file to write (JSON)")(
      "label", po::value<std::vector<std::string>>()->composing(),
      "KEY=VALUE recorded under 'smoe.labels' (e.g. experts=8, method=uncurl, factor=2); repeatable")(
      "dtype", po::value<std::string>()->default_value("f32"), "compute dtype: f32 or bf16")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads per rank")(
      "context", po::value<int64_t>()->default_value(2048), "longest sequence the model sees")(
      "tokenizer", po::value<std::string>()->default_value("byte"), "byte, or a SentencePiece .model file")(
      "placement", po::value<std::string>(), "expert placement map (JSON)")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"eval", "--model DIR --task NAME=FILE [--task ...] --out results.json",
                                      "Evaluates a checkpoint on eval sets: perplexity and bits per byte, "
                                      "multiple-choice accuracy, exact match of greedy generation."},
                         opts, vm))
    return 0;
  const std::string dtype_name = vm["dtype"].as<std::string>();
  SMOE_CHECK_INPUT(dtype_name == "f32" || dtype_name == "bf16", "--dtype must be f32 or bf16, found '", dtype_name, "'");
  const int64_t context = vm["context"].as<int64_t>();
  SMOE_CHECK_INPUT(context >= 2, "--context must be at least 2");
  SMOE_CHECK_INPUT(vm["threads"].as<int>() >= 0, "--threads must not be negative");
  const auto tasks = parse_named_files(vm["task"].as<std::vector<std::string>>(), "--task");
  nlohmann::json labels = nlohmann::json::object();
  if (vm.count("label"))
    for (const auto& l : vm["label"].as<std::vector<std::string>>()) {
      const size_t eq = l.find('=');
      SMOE_CHECK_INPUT(eq != std::string::npos && eq > 0, "--label must be KEY=VALUE, found '", clip(l), "'");
      SMOE_CHECK_INPUT(!labels.contains(l.substr(0, eq)), "--label '", clip(l.substr(0, eq)), "' given twice");
      labels[l.substr(0, eq)] = l.substr(eq + 1);
    }
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
  Decoder decoder(checkpoint, {dtype_name == "f32" ? at::kFloat : at::kBFloat16, at::kCPU,
                               [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; }});
  ExpertParallelExecutor executor(*host, placement);
  auto tokenizer = make_tokenizer(vm["tokenizer"].as<std::string>());

  nlohmann::json results = nlohmann::json::object(), samples = nlohmann::json::object();
  for (const auto& [name, path] : tasks) {
    std::vector<EvalRecord> records = read_eval_records(path, *tokenizer, config.vocab_size, context, rank, ranks);
    const EvalTotals t = evaluate(decoder, executor, *host, records, context);
    nlohmann::json r = {{"alias", name}};
    int64_t n = 0;
    if (t.tokens > 0) {
      r["perplexity,none"] = std::exp(t.nll / static_cast<double>(t.tokens));
      r["perplexity_stderr,none"] = "N/A";
      r["nll,none"] = t.nll / static_cast<double>(t.tokens);
      n += t.tokens;
    }
    if (t.text_bytes > 0) {
      r["bits_per_byte,none"] = t.text_nll / t.text_bytes / std::log(2.0);
      r["bits_per_byte_stderr,none"] = "N/A";
    }
    if (t.mc > 0) {
      r["acc,none"] = static_cast<double>(t.mc_correct) / static_cast<double>(t.mc);
      r["acc_stderr,none"] = stderr_of(t.mc_correct, t.mc);
      r["acc_norm,none"] = static_cast<double>(t.mc_correct_norm) / static_cast<double>(t.mc);
      r["acc_norm_stderr,none"] = stderr_of(t.mc_correct_norm, t.mc);
    }
    if (t.gen > 0) {
      r["exact_match,none"] = static_cast<double>(t.gen_correct) / static_cast<double>(t.gen);
      r["exact_match_stderr,none"] = stderr_of(t.gen_correct, t.gen);
    }
    results[name] = r;
    const int64_t records_total = t.mc + t.gen;
    samples[name] = {{"original", records_total}, {"effective", records_total}, {"tokens", n}};
    log_info(str("eval ", name, ": ", r.dump()));
  }

  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char created[32];
  std::strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  nlohmann::json plan = nlohmann::json::object();
  for (const auto& [k, v] : checkpoint.metadata())
    if (k.rfind("smoe_", 0) == 0) plan[k] = v;
  nlohmann::json out = {
      {"results", results},
      {"n-samples", samples},
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
