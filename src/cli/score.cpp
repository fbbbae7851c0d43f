// smoe score: loads a checkpoint, runs a corpus through it, prints the mean
// negative log-likelihood and perplexity; optionally writes the logits and the
// routing choices. The way to check that a checkpoint loads and runs right.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/io/checkpoint.h"
#include "smoe/io/corpus.h"
#include "smoe/io/tensor-io.h"
#include "smoe/io/tokenizer.h"
#include "smoe/model/decoder.h"

namespace smoe {

namespace {

// Keeps each MoE layer's expert choices, batch by batch.
class RoutingRecorder : public RoutingObserver {
 public:
  void on_routing(const MoeLayer& layer, const at::Tensor&, const Routing& r) override {
    choices_[layer.layer].push_back(r.experts.clone());
  }
  std::map<int64_t, std::vector<at::Tensor>>& choices() { return choices_; }

 private:
  std::map<int64_t, std::vector<at::Tensor>> choices_;
};

at::ScalarType parse_compute_dtype(const std::string& name) {
  if (name == "f32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  throw InputError(str("--dtype must be f32 or bf16, found '", name, "'"));
}

}  // namespace

int run_score(int argc, char** argv) {
  po::options_description opts("smoe score options");
  opts.add_options()("model", po::value<std::string>()->required(), "checkpoint folder (HF layout)")(
      "corpus", po::value<std::string>()->required(), "JSONL corpus: {\"text\": ...} or {\"input_ids\": [...]}")(
      "dtype", po::value<std::string>()->default_value("f32"), "compute dtype: f32 or bf16")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads (0: every core this process may use)")(
      "context", po::value<int64_t>()->default_value(2048), "longest sequence; longer documents are cut")(
      "batch", po::value<int64_t>()->default_value(8), "sequences of equal length run together, up to this many")(
      "tokenizer", po::value<std::string>()->default_value("byte"),
      "tokenizer for text records: byte, or a SentencePiece .model file")(
      "logits", po::value<std::string>(), "write logits, tokens and routing choices to this .safetensors file");
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"score", "--model DIR --corpus FILE [options]",
                                      "Runs a checkpoint over a corpus and prints tokens, mean negative "
                                      "log-likelihood and perplexity=<value>."},
                         opts, vm))
    return 0;

  const at::ScalarType dtype = parse_compute_dtype(vm["dtype"].as<std::string>());
  const int64_t context = vm["context"].as<int64_t>();
  const int64_t batch = vm["batch"].as<int64_t>();
  SMOE_CHECK_INPUT(context >= 2, "--context must be at least 2, found ", context);
  SMOE_CHECK_INPUT(batch >= 1, "--batch must be at least 1, found ", batch);
  SMOE_CHECK_INPUT(vm["threads"].as<int>() >= 0, "--threads must not be negative");
  const int threads = resolve_threads(vm["threads"].as<int>());
  at::set_num_threads(threads);

  Checkpoint checkpoint(vm["model"].as<std::string>());
  auto tokenizer = make_tokenizer(vm["tokenizer"].as<std::string>());
  const std::string corpus_path = vm["corpus"].as<std::string>();
  std::vector<Document> docs = read_corpus(corpus_path, *tokenizer, checkpoint.config().vocab_size);
  std::vector<std::vector<int64_t>> seqs = split_sequences(docs, context);
  SMOE_CHECK_INPUT(!seqs.empty(), corpus_path, ": no record holds two or more tokens: nothing to score");

  Decoder decoder(checkpoint, {dtype, {}});
  log_info(str("score: ", family_name(decoder.config().family), " model ", checkpoint.dir(), " (",
               decoder.parameter_bytes() / 1e6, " MB of parameters, ", vm["dtype"].as<std::string>(), ", ", threads,
               " threads), ", seqs.size(), " sequences"));

  LocalMoeExecutor executor;
  RoutingRecorder recorder;
  const bool keep = vm.count("logits") != 0;
  std::vector<at::Tensor> all_logits, all_tokens;
  double nll_sum = 0.0;
  int64_t predicted = 0;
  const auto start = std::chrono::steady_clock::now();

  at::NoGradGuard no_grad;
  for (size_t i = 0; i < seqs.size();) {
    size_t j = i + 1;
    while (j < seqs.size() && static_cast<int64_t>(j - i) < batch && seqs[j].size() == seqs[i].size()) ++j;
    const int64_t B = static_cast<int64_t>(j - i), S = static_cast<int64_t>(seqs[i].size());
    at::Tensor tokens = at::empty({B, S}, at::kLong);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(tokens[b].data_ptr<int64_t>(), seqs[i + static_cast<size_t>(b)].data(), S * sizeof(int64_t));

    at::Tensor logits = decoder.forward(tokens, executor, keep ? &recorder : nullptr);
    at::Tensor logp = at::log_softmax(logits.narrow(1, 0, S - 1), -1);
    at::Tensor target = tokens.narrow(1, 1, S - 1).unsqueeze(-1);
    nll_sum -= logp.gather(-1, target).sum().to(at::kDouble).item<double>();
    predicted += B * (S - 1);
    if (keep) {
      all_logits.push_back(logits.reshape({B * S, -1}));
      all_tokens.push_back(tokens.reshape({-1}));
    }
    i = j;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const double nll = nll_sum / static_cast<double>(predicted);
  std::printf("tokens=%lld\nnll=%.6f\nperplexity=%.6f\n", static_cast<long long>(predicted), nll, std::exp(nll));
  log_info(str("score: ", predicted, " predicted tokens in ", seconds, " s"));

  if (keep) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    out.emplace_back("logits", at::cat(all_logits, 0));
    out.emplace_back("tokens", at::cat(all_tokens, 0));
    std::vector<int64_t> lengths;
    for (const auto& s : seqs) lengths.push_back(static_cast<int64_t>(s.size()));
    out.emplace_back("sequence_lengths", at::tensor(lengths, at::kLong));
    for (auto& [layer, parts] : recorder.choices())
      out.emplace_back("routing.layer" + std::to_string(layer) + ".experts", at::cat(parts, 0));
    const std::string path = vm["logits"].as<std::string>();
    save_safetensors(path, out,
                     {{"model", checkpoint.dir()}, {"corpus", corpus_path}, {"dtype", vm["dtype"].as<std::string>()}});
    log_info("score: wrote " + path);
  }
  return 0;
}

}  // namespace smoe
