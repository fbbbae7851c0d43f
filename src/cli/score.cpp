// smoe score: loads a checkpoint, runs a corpus through it, prints the mean
// negative log-likelihood and perplexity; optionally writes the logits and the
// routing choices. The way to check that a checkpoint loads and runs right.
//
// Under MPI the experts are sharded over the ranks (expert parallelism) and each
// rank streams its own part of the corpus (share_corpus).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/dist/comm.h"
#include "smoe/dist/ep-executor.h"
#include "smoe/dist/mpi.h"
#include "smoe/dist/placement.h"
#include "smoe/io/checkpoint.h"
#include "smoe/core/output.h"
#include "smoe/io/corpus.h"
#include "smoe/io/outputs.h"
#include "smoe/io/tensor-io.h"
#include "smoe/text/tokenizer.h"
#include "smoe/model/decoder.h"

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

}  // namespace

int run_score(int argc, char** argv) {
  po::options_description opts("smoe score options");
  opts.add_options()("model", po::value<std::string>()->required(), "checkpoint folder (HF layout)")(
      "corpus", po::value<std::string>()->required(), "JSONL corpus ({\"text\": ...} or {\"input_ids\": [...]}), or a Megatron indexed dataset (PREFIX or folder)")(
      "dtype", po::value<std::string>()->default_value("f32"), ("compute dtype: " + choice_list(dtype_names())).c_str())(
      "device", po::value<std::string>()->default_value("cpu"),
      "cpu (MPI between ranks) or cuda (one GPU per rank, NCCL between ranks)")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads (0: every core this process may use)")(
      "context", po::value<int64_t>()->default_value(2048), "longest sequence; longer documents are cut")(
      "batch", po::value<int64_t>()->default_value(8), "pieces of one document of equal length run together, up to this many")(
      "tokenizer", po::value<std::string>(),
      "a tokenizer.json, a tiktoken.model, a SentencePiece .model, or byte; default: the model folder's own "
      "(tokenizer.json, tiktoken.model, tokenizer.model; byte for models smoe trained)")(
      "executor", po::value<std::string>()->default_value("auto"),
      "MoE execution: local, expert-parallel, or auto (expert-parallel under MPI with more than one rank)")(
      "placement", po::value<std::string>(), "expert placement map (JSON); default: contiguous blocks of experts")(
      "capacity-factor", po::value<double>()->default_value(0.0),
      "if > 0, each expert takes at most factor * T * k / E of a rank's T tokens; the lowest gates are dropped")(
      "logits", po::value<std::string>(), "write logits, tokens and routing choices to this .safetensors file")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"score", "--model DIR --corpus FILE [options]",
                                      "Runs a checkpoint over a corpus and prints tokens, mean negative "
                                      "log-likelihood and perplexity=<value>."},
                         opts, vm))
    return 0;

  const at::ScalarType dtype = scalar_type(parse_choice(dtype_names(), "--dtype", vm["dtype"].as<std::string>()));
  const std::string device_name = vm["device"].as<std::string>();
  const bool cuda = parse_choice(device_names(), "--device", device_name) == DeviceKind::Cuda;
  const ExecutorKind executor_kind = parse_choice(executor_names(), "--executor", vm["executor"].as<std::string>());
  const int64_t context = vm["context"].as<int64_t>();
  const int64_t batch = vm["batch"].as<int64_t>();
  const double capacity_factor = vm["capacity-factor"].as<double>();
  SMOE_CHECK_INPUT(context >= 2, "--context must be at least 2, found ", context);
  SMOE_CHECK_INPUT(batch >= 1, "--batch must be at least 1, found ", batch);
  SMOE_CHECK_INPUT(capacity_factor >= 0, "--capacity-factor must not be negative, found ", capacity_factor);
  SMOE_CHECK_INPUT(vm["threads"].as<int>() >= 0, "--threads must not be negative");
  const int threads = resolve_threads(vm["threads"].as<int>());
  at::set_num_threads(threads);

  // Host data (counts, sums, logits for the output) always moves over MPI.
  std::unique_ptr<Communicator> host = make_mpi_communicator();
  const int rank = host->rank(), ranks = host->size();
  const at::Device device = cuda ? at::Device(at::kCUDA, local_rank()) : at::Device(at::kCPU);
  std::unique_ptr<Communicator> nccl;
  if (cuda) nccl = make_nccl_communicator(MPI_COMM_WORLD, local_rank());
  Communicator& comm = cuda ? *nccl : *host;
  const bool parallel = executor_kind == ExecutorKind::ExpertParallel ||
                        (executor_kind == ExecutorKind::Auto && (ranks > 1 || capacity_factor > 0));
  SMOE_CHECK_INPUT(parallel || ranks == 1, "--executor local runs every expert in one process; with ", ranks,
                   " ranks use expert-parallel");

  Checkpoint checkpoint(vm["model"].as<std::string>());
  const ModelConfig& config = checkpoint.config();
  const ExpertPlacement placement = vm.count("placement")
                                        ? ExpertPlacement::from_file(vm["placement"].as<std::string>(), config, ranks)
                                        : ExpertPlacement::contiguous(config, ranks);
  DecoderOptions dopts{dtype, device, {}};
  if (parallel) dopts.holds_expert = [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; };
  Decoder decoder(checkpoint, dopts);

  auto tokenizer = make_tokenizer(vm.count("tokenizer") ? vm["tokenizer"].as<std::string>() : "", checkpoint.dir());
  const std::string corpus_path = vm["corpus"].as<std::string>();
  std::unique_ptr<Output> logits_out;
  if (vm.count("logits") && rank == 0) {
    OutputSpec spec = safetensors_output(vm["logits"].as<std::string>(), "score");
    spec.option = "--logits";
    spec.overwrite = vm["overwrite"].as<bool>();
    spec.inputs = option_inputs(vm, {"model", "placement", "tokenizer"});
    for (const std::string& file : corpus_files(corpus_path)) spec.inputs.push_back(file);
    logits_out = std::make_unique<Output>(spec);
  }
  if (vm.count("logits")) share_output_temporary(logits_out.get(), MPI_COMM_WORLD);
  const CorpusPart part = share_corpus(corpus_path, *tokenizer, config.vocab_size, 0, *host);
  CorpusReader reader(corpus_path, *tokenizer, config.vocab_size, part);
  BatchReader batches(reader, context, batch);

  log_info(str("score: ", family_name(config.family), " model ", checkpoint.dir(), " (", decoder.parameter_bytes() / 1e6,
               " MB of parameters on rank 0, ", vm["dtype"].as<std::string>(), " on ", device_name, ", ", ranks,
               " rank(s) x ", threads, " threads, ", parallel ? "expert-parallel" : "local", " experts)"));

  std::unique_ptr<MoeExecutor> executor;
  ExpertParallelExecutor* ep = nullptr;
  if (parallel) {
    auto e = std::make_unique<ExpertParallelExecutor>(comm, placement, capacity_factor);
    ep = e.get();
    executor = std::move(e);
  } else {
    executor = std::make_unique<LocalMoeExecutor>();
  }

  RoutingRecorder recorder;
  const bool keep = vm.count("logits") != 0;
  std::vector<at::Tensor> all_logits, all_tokens;
  std::vector<int64_t> meta;  // (document, piece, length) of each sequence run, for --logits
  double nll_sum = 0.0;
  int64_t predicted = 0;
  const auto start = std::chrono::steady_clock::now();

  // Streams this rank's share, one batch at a time. Every rank takes part in
  // every step's exchanges, with an empty batch once its own run out, until none
  // has another.
  c10::NoGradGuard no_grad;
  std::vector<Sequence> seqs;
  bool mine = batches.next(&seqs);
  auto any_rank = [&](bool flag) {
    at::Tensor t = at::tensor({static_cast<int64_t>(flag)}, at::kLong);
    host->all_reduce_sum(t);
    return t.item<int64_t>() > 0;
  };
  while (any_rank(mine)) {
    if (!mine) seqs.clear();
    const int64_t B = static_cast<int64_t>(seqs.size()), S = B > 0 ? static_cast<int64_t>(seqs[0].tokens.size()) : 2;
    at::Tensor tokens = at::empty({B, S}, at::kLong);
    for (int64_t b = 0; b < B; ++b) {
      const Sequence& q = seqs[static_cast<size_t>(b)];
      std::memcpy(tokens[b].data_ptr<int64_t>(), q.tokens.data(), static_cast<size_t>(S) * sizeof(int64_t));
      if (keep) meta.insert(meta.end(), {q.document, q.piece, S});
    }
    at::Tensor logits = decoder.forward(tokens, *executor, keep ? &recorder : nullptr).cpu();
    mine = mine && batches.next(&seqs);
    if (B == 0) continue;
    at::Tensor logp = at::log_softmax(logits.narrow(1, 0, S - 1), -1);
    at::Tensor target = tokens.narrow(1, 1, S - 1).unsqueeze(-1);
    nll_sum -= logp.gather(-1, target).sum().to(at::kDouble).item<double>();
    predicted += B * (S - 1);
    if (keep) {
      all_logits.push_back(logits.reshape({B * S, -1}));
      all_tokens.push_back(tokens.reshape({-1}));
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  at::Tensor totals = at::tensor({nll_sum, static_cast<double>(predicted)}, at::kDouble);
  host->all_reduce_sum(totals);
  SMOE_CHECK_INPUT(totals[1].item<double>() > 0, corpus_path, ": no record holds two or more tokens: nothing to score");
  const double nll = totals[0].item<double>() / totals[1].item<double>();
  if (rank == 0)
    std::printf("tokens=%lld\nnll=%.6f\nperplexity=%.6f\ntokens_per_second=%.1f\n",
                static_cast<long long>(totals[1].item<double>()), nll, std::exp(nll), totals[1].item<double>() / seconds);
  if (ep) {
    at::Tensor slots = at::tensor({ep->dropped_slots(), ep->routed_slots()}, at::kLong);
    host->all_reduce_sum(slots);
    if (capacity_factor > 0 && rank == 0)
      std::printf("dropped_slots=%lld\nrouted_slots=%lld\n", static_cast<long long>(slots[0].item<int64_t>()),
                  static_cast<long long>(slots[1].item<int64_t>()));
    log_info(str("score: rank 0 spent ", ep->exchange_seconds(), " s of ", seconds, " s in token exchanges"));
  }
  log_info(str("score: ", static_cast<int64_t>(totals[1].item<double>()), " predicted tokens in ", seconds, " s"));

  if (keep) {
    const int64_t vocab = config.vocab_size;
    at::Tensor local_meta = at::tensor(meta, at::kLong).view({-1, 3});
    auto rows = [&](std::vector<at::Tensor>& parts, at::Tensor empty) {
      return parts.empty() ? empty : at::cat(parts, 0);
    };
    at::Tensor g_meta = host->gather_rows(local_meta, 0);
    at::Tensor g_logits = host->gather_rows(rows(all_logits, at::empty({0, vocab}, at::kFloat)), 0);
    at::Tensor g_tokens = host->gather_rows(rows(all_tokens, at::empty({0}, at::kLong)), 0);
    std::vector<std::pair<std::string, at::Tensor>> out;
    std::map<int64_t, at::Tensor> g_routing;
    for (int64_t l = 0; l < config.num_layers; ++l) {
      if (!config.is_moe(l)) continue;
      auto& parts = recorder.choices()[l];
      g_routing[l] = host->gather_rows(rows(parts, at::empty({0, config.router.top_k}, at::kLong)), 0);
    }
    if (rank == 0) {
      out.emplace_back("logits", corpus_order(g_meta, g_logits));
      out.emplace_back("tokens", corpus_order(g_meta, g_tokens));
      std::vector<int64_t> lengths;
      for (int64_t i : sequence_order(g_meta)) lengths.push_back(g_meta[i][2].item<int64_t>());
      out.emplace_back("sequence_lengths", at::tensor(lengths, at::kLong));
      for (auto& [layer, t] : g_routing)
        out.emplace_back("routing.layer" + std::to_string(layer) + ".experts", corpus_order(g_meta, t));
      save_safetensors(logits_out->temp(), out,
                       {{"smoe_job", "score"},
                        {"model", checkpoint.dir()},
                        {"corpus", corpus_path},
                        {"dtype", vm["dtype"].as<std::string>()},
                        {"ranks", std::to_string(ranks)}});
      logits_out->commit();
      log_info("score: wrote " + logits_out->path());
    }
  }
  return 0;
}

}  // namespace smoe
