// smoe collect: runs a checkpoint expert-parallel over one or more task corpora
// and writes their routing statistics to stats.h5 (docs/stats-h5.md).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/hash.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/core/progress.h"
#include "smoe/core/signals.h"
#include "smoe/dist/comm.h"
#include "smoe/dist/ep-executor.h"
#include "smoe/dist/mpi.h"
#include "smoe/dist/placement.h"
#include "smoe/io/checkpoint.h"
#include "smoe/io/corpus.h"
#include "smoe/io/hdf5.h"
#include "smoe/io/outputs.h"
#include "smoe/text/tokenizer.h"
#include "smoe/model/decoder.h"
#include "smoe/stats/collector.h"
#include "smoe/stats/stats-file.h"

namespace smoe {

namespace {

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


std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

int run_collect(int argc, char** argv) {
  checkpoint_on_stop();  // from the start: a signal while loading is answered at the first step
  po::options_description opts("smoe collect options");
  opts.add_options()("model", po::value<std::string>()->required(), "checkpoint folder (HF layout)")(
      "task", po::value<std::vector<std::string>>()->required()->composing(),
      "NAME=FILE: a task and its corpus, JSONL or a Megatron indexed dataset (PREFIX or folder) (repeatable)")(
      "out", po::value<std::string>()->required(), "statistics file to write (HDF5)")(
      "dtype", po::value<std::string>()->default_value("f32"), ("compute dtype: " + choice_list(dtype_names())).c_str())(
      "device", po::value<std::string>()->default_value("cpu"), "cpu, or cuda (one GPU per rank, NCCL)")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads per rank (0: every core the rank may use)")(
      "context", po::value<int64_t>()->default_value(2048), "longest sequence; longer documents are cut")(
      "batch", po::value<int64_t>()->default_value(8), "pieces of one document of equal length run together")(
      "tokenizer", po::value<std::string>(),
      "a tokenizer.json, a tiktoken.model, a SentencePiece .model, or byte; default: the model folder's own "
      "(tokenizer.json, tiktoken.model, tokenizer.model; byte for models smoe trained)")(
      "schedule", po::value<std::string>()->default_value("default"),
      "default (whole model loaded) or layerwise (one layer's experts at a time, hidden states held)")(
      "max-tokens", po::value<int64_t>()->default_value(0), "use at most this many tokens of each corpus (0: all)")(
      "out-mean", po::bool_switch(), "also record out_mean: every expert's mean output over all tokens (costly)")(
      "sample", po::value<int64_t>()->default_value(0), "rows of hidden_sample per layer (0: none)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the hidden_sample")(
      "checkpoint-tokens", po::value<int64_t>()->default_value(0),
      "checkpoint into OUT.work.h5 every this many tokens (0: off)")(
      "checkpoint-minutes", po::value<double>()->default_value(10.0), "and every this many minutes (0: off)")(
      "resume", po::bool_switch(), "continue from OUT.work.h5 if it exists")(
      "progress-seconds", po::value<double>()->default_value(30.0), "seconds between progress lines")(
      "placement", po::value<std::string>(), "expert placement map (JSON); default: contiguous blocks")(
      "capacity-factor", po::value<double>()->default_value(0.0), "drop routed slots beyond this capacity (0: none)")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"collect", "--model DIR --task NAME=FILE [--task ...] --out stats.h5 [options]",
                                      "Runs the model over each task's corpus, experts sharded over the MPI ranks, "
                                      "and writes per-task, per-MoE-layer routing statistics to an HDF5 file."},
                         opts, vm))
    return 0;

  const std::string dtype_name = vm["dtype"].as<std::string>();
  const at::ScalarType dtype = scalar_type(parse_choice(dtype_names(), "--dtype", dtype_name));
  const std::string device_name = vm["device"].as<std::string>();
  const bool cuda = parse_choice(device_names(), "--device", device_name) == DeviceKind::Cuda;
  const std::string schedule = vm["schedule"].as<std::string>();
  const bool layerwise = parse_choice(schedule_names(), "--schedule", schedule) == Schedule::Layerwise;
  const int64_t context = vm["context"].as<int64_t>(), batch = vm["batch"].as<int64_t>();
  const int64_t max_tokens = vm["max-tokens"].as<int64_t>(), sample = vm["sample"].as<int64_t>();
  const int64_t checkpoint_tokens = vm["checkpoint-tokens"].as<int64_t>();
  const double checkpoint_minutes = vm["checkpoint-minutes"].as<double>();
  SMOE_CHECK_INPUT(context >= 2, "--context must be at least 2, found ", context);
  SMOE_CHECK_INPUT(batch >= 1, "--batch must be at least 1, found ", batch);
  SMOE_CHECK_INPUT(max_tokens >= 0, "--max-tokens must not be negative");
  SMOE_CHECK_INPUT(sample >= 0, "--sample must not be negative");
  SMOE_CHECK_INPUT(checkpoint_tokens >= 0 && checkpoint_minutes >= 0, "checkpoint intervals must not be negative");
  SMOE_CHECK_INPUT(vm["threads"].as<int>() >= 0, "--threads must not be negative");
  const std::string out = normalise_output_path(vm["out"].as<std::string>(), "--out");
  const std::string work = out + ".work.h5";
  const auto task_specs = parse_named_files(vm["task"].as<std::vector<std::string>>(), "--task");

  at::set_num_threads(resolve_threads(vm["threads"].as<int>()));
  std::unique_ptr<Communicator> host = make_mpi_communicator();
  const int rank = host->rank(), ranks = host->size();
  // The output's place is checked, and its temporary made, before any work.
  std::unique_ptr<Output> output;
  if (rank == 0) {
    OutputSpec spec = hdf5_output(out, "collect", "smoe-stats");
    spec.overwrite = vm["overwrite"].as<bool>();
    spec.inputs = option_inputs(vm, {"model", "placement", "tokenizer"});
    for (const auto& task : task_specs)
      for (const std::string& file : corpus_files(task.second)) spec.inputs.push_back(file);
    output = std::make_unique<Output>(spec);
    // The working file beside it is replaced and removed by this run: only ever one of collect's.
    struct stat st {};
    SMOE_CHECK_INPUT(::lstat(work.c_str(), &st) != 0 ||
                         (S_ISREG(st.st_mode) && h5::file_format(work) == "smoe-collect-checkpoint"),
                     work, " exists and is not a working file of smoe collect; remove it or choose another --out");
  }
  const std::string tmp = share_output_temporary(output.get(), MPI_COMM_WORLD);
  track_output_temporary(tmp + ".work.h5");  // a checkpoint being written when the job fails
  const int gpu = local_rank();
  std::unique_ptr<Communicator> nccl;
  if (cuda) nccl = make_nccl_communicator(MPI_COMM_WORLD, gpu);
  Communicator& comm = cuda ? *nccl : *host;
  const at::Device device = cuda ? at::Device(at::kCUDA, gpu) : at::Device(at::kCPU);

  Checkpoint checkpoint(vm["model"].as<std::string>());
  const ModelConfig& config = checkpoint.config();
  const ExpertPlacement placement = vm.count("placement")
                                        ? ExpertPlacement::from_file(vm["placement"].as<std::string>(), config, ranks)
                                        : ExpertPlacement::contiguous(config, ranks);
  DecoderOptions dopts{dtype, device, [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; }};
  dopts.load_layers = !layerwise;
  dopts.load_head = false;
  Decoder decoder(checkpoint, dopts);
  ExpertParallelExecutor executor(comm, placement, vm["capacity-factor"].as<double>());
  auto tokenizer = make_tokenizer(vm.count("tokenizer") ? vm["tokenizer"].as<std::string>() : "", checkpoint.dir());

  // Provenance and the run's fingerprint, from rank 0 so every rank writes the same.
  std::string config_sha = sha256_file(checkpoint.dir() + "/config.json");
  std::vector<std::string> corpus_sha(task_specs.size());
  nlohmann::json fp = {{"config_sha256", config_sha}, {"dtype", dtype_name},  {"context", context},
                       {"batch", batch},              {"max_tokens", max_tokens}, {"out_mean", vm["out-mean"].as<bool>()},
                       {"sample", sample},            {"seed", vm["seed"].as<uint64_t>()},
                       {"schedule", schedule},        {"tokenizer", tokenizer->name()}};
  for (size_t t = 0; t < task_specs.size(); ++t) {
    if (rank == 0) corpus_sha[t] = corpus_sha256(task_specs[t].second);
    broadcast_string(corpus_sha[t], 0, MPI_COMM_WORLD);
    fp["tasks"].push_back({task_specs[t].first, corpus_sha[t]});
  }
  const std::string fingerprint = sha256_hex(fp.dump());
  std::string command;
  for (int i = 0; i < argc; ++i) command += std::string(i ? " " : "smoe ") + argv[i];
  nlohmann::json prov = {{"software", std::string("smoe ") + SMOE_VERSION},
                         {"created", utc_now()},
                         {"model", checkpoint.dir()},
                         {"model_type", config.model_type},
                         {"model_config_sha256", config_sha},
                         {"command", command},
                         {"options", fp.dump()},
                         {"schedule", schedule},
                         {"dtype", dtype_name},
                         {"slurm_job_id", env("SLURM_JOB_ID")},
                         {"slurm_array_job_id", env("SLURM_ARRAY_JOB_ID")},
                         {"slurm_array_task_id", env("SLURM_ARRAY_TASK_ID")}};
  std::string prov_text = prov.dump();
  broadcast_string(prov_text, 0, MPI_COMM_WORLD);
  Provenance provenance;
  const nlohmann::json shared_prov = nlohmann::json::parse(prov_text);
  for (auto& [k, v] : shared_prov.items()) provenance[k] = v.get<std::string>();

  CollectorOptions copts{vm["out-mean"].as<bool>(), sample, vm["seed"].as<uint64_t>()};
  std::vector<TaskStats> tasks(task_specs.size());
  for (size_t t = 0; t < tasks.size(); ++t) {
    tasks[t].name = task_specs[t].first;
    tasks[t].corpus = task_specs[t].second;
    tasks[t].corpus_sha256 = corpus_sha[t];
    tasks[t].collector = std::make_unique<StatsCollector>(config, copts, &comm);
  }

  int64_t resume_task = 0, resume_phase = 0;
  if (vm["resume"].as<bool>() &&
      read_checkpoint(work, MPI_COMM_WORLD, fingerprint, &resume_task, &resume_phase, tasks))
    log_info(str("collect: resuming from ", work, " at task '", tasks[static_cast<size_t>(resume_task)].name,
                 "', ", layerwise ? "layer " : "step ", resume_phase));

  log_info(str("collect: ", family_name(config.family), " model ", checkpoint.dir(), ", ", ranks, " rank(s), ",
               schedule, " schedule, ", dtype_name, " on ", device_name, ", ", decoder.parameter_bytes() / 1e6,
               " MB of parameters on rank 0"));

  c10::NoGradGuard no_grad;
  const auto started = std::chrono::steady_clock::now();
  int64_t tokens_run = 0;  // over all ranks, this run (not counting a resumed part)
  auto last_checkpoint = std::chrono::steady_clock::now();
  int64_t tokens_since_checkpoint = 0;
  // Between steps: all ranks agree on tokens done, whether any has another batch
  // (`more`: its next one is read), how much of the corpus is read, and whether to
  // checkpoint or stop. Returns true when the job stops.
  struct Step {
    int64_t tokens = 0;
    bool more = false;
    int64_t read = 0, share = 0;  // this rank's part of the corpus: read so far, all of it
  };
  auto sync = [&](const Step& step, int64_t task, int64_t phase, Progress& progress, int64_t& done,
                  bool* any_more) -> bool {
    tokens_since_checkpoint += step.tokens;
    const double minutes =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_checkpoint).count() / 60.0;
    const bool due = (checkpoint_tokens > 0 && tokens_since_checkpoint >= checkpoint_tokens) ||
                     (checkpoint_minutes > 0 && minutes >= checkpoint_minutes);
    at::Tensor flags = at::tensor({step.tokens, static_cast<int64_t>(due), static_cast<int64_t>(stop_requested()),
                                   static_cast<int64_t>(step.more), step.read, step.share},
                                  at::kLong);
    host->all_reduce_sum(flags);
    const int64_t* f = flags.data_ptr<int64_t>();
    done += f[0];
    if (any_more) *any_more = f[3] > 0;
    // Streaming: the total estimated from the share of the corpus read so far.
    if (!layerwise && f[4] > 0) progress.set_total(static_cast<int64_t>(done * (static_cast<double>(f[5]) / f[4])), true);
    progress.update(done);
    const bool stop = f[2] > 0;
    if (f[1] > 0 || stop) {
      write_checkpoint(work, tmp + ".work.h5", MPI_COMM_WORLD, fingerprint, task, phase, tasks);
      tokens_since_checkpoint = 0;
      last_checkpoint = std::chrono::steady_clock::now();
      log_info(str("collect: checkpoint written to ", work, " (task '", tasks[static_cast<size_t>(task)].name, "', ",
                   layerwise ? "layer " : "step ", phase, ")"));
    }
    return stop;
  };

  for (int64_t t = resume_task; t < static_cast<int64_t>(tasks.size()); ++t) {
    TaskStats& task = tasks[static_cast<size_t>(t)];
    const CorpusPart part = share_corpus(task.corpus, *tokenizer, config.vocab_size, max_tokens, *host);
    CorpusReader reader(task.corpus, *tokenizer, config.vocab_size, part);
    BatchReader batches(reader, context, batch);
    const int64_t first = t == resume_task ? resume_phase : 0;
    Progress progress("collect " + task.name, "tokens", 0, vm["progress-seconds"].as<double>());
    int64_t done = 0;
    StatsCollector& collector = *task.collector;
    std::vector<Sequence> seqs;

    if (!layerwise) {
      // Streams its share: one batch in memory. Steps done before a resume are read again, not run.
      for (int64_t step = 0; step < first && batches.next(&seqs);) ++step;
      Step s;
      s.share = static_cast<int64_t>(reader.end() - part.begin);
      s.more = batches.next(&seqs);
      bool any = false;
      if (sync(s, t, first, progress, done, &any)) return kExitCheckpointed;
      for (int64_t step = first; any; ++step) {
        if (!s.more) seqs.clear();
        Batch bt = make_batch(seqs, context);
        collector.set_tokens(bt.document, bt.position);
        at::Tensor h = decoder.embed(bt.tokens);
        for (int64_t l = 0; l < config.num_layers; ++l) h = decoder.apply_layer(l, h, executor, &collector);
        s.tokens = bt.tokens.numel();
        s.more = s.more && batches.next(&seqs);
        s.read = static_cast<int64_t>(reader.position() - part.begin);
        if (sync(s, t, step + 1, progress, done, &any)) return kExitCheckpointed;
      }
    } else {
      // Holds every hidden state of its share, one layer's experts at a time.
      std::vector<std::vector<Sequence>> held;
      while (batches.next(&seqs)) held.push_back(std::move(seqs));
      at::Tensor most = at::tensor({static_cast<int64_t>(held.size()), batches.tokens()}, at::kLong);
      at::Tensor total = most.clone();
      host->all_reduce_max(most);
      host->all_reduce_sum(total);
      const int64_t steps = most[0].item<int64_t>();
      progress.set_total(total[1].item<int64_t>() * config.num_layers, false);
      const std::vector<Sequence> none;
      auto batch_of = [&](int64_t step) -> const std::vector<Sequence>& {
        return step < static_cast<int64_t>(held.size()) ? held[static_cast<size_t>(step)] : none;
      };
      std::vector<at::Tensor> hidden(static_cast<size_t>(steps));
      for (int64_t step = 0; step < steps; ++step)
        hidden[static_cast<size_t>(step)] = decoder.embed(make_batch(batch_of(step), context).tokens);
      for (int64_t l = 0; l < config.num_layers; ++l) {
        decoder.load_layer(l);
        // Layers finished before a resume are applied again, unobserved, to rebuild the hidden states.
        const bool observe = l >= first;
        for (int64_t step = 0; step < steps; ++step) {
          if (observe) {
            Batch bt = make_batch(batch_of(step), context);
            collector.set_tokens(bt.document, bt.position);
          }
          at::Tensor& h = hidden[static_cast<size_t>(step)];
          h = decoder.apply_layer(l, h, executor, observe ? &collector : nullptr);
        }
        decoder.release_layer(l);
        if (observe && sync({batches.tokens()}, t, l + 1, progress, done, nullptr)) return kExitCheckpointed;
      }
    }
    at::Tensor counts = at::tensor({batches.tokens(), batches.sequences()}, at::kLong);
    host->all_reduce_sum(counts);
    task.tokens = counts[0].item<int64_t>();
    task.sequences = counts[1].item<int64_t>();
    SMOE_CHECK_INPUT(task.tokens > 0, task.corpus, ": corpus holds no tokens");
    progress.set_total(layerwise ? task.tokens * config.num_layers : task.tokens, false);
    progress.update(done, true);
    tokens_run += done / (layerwise ? config.num_layers : 1);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  log_info(str("collect: ", tokens_run, " tokens in ", seconds, " s: ", tokens_run / seconds,
               " tokens/s; rank 0 spent ", executor.exchange_seconds(), " s (",
               100.0 * executor.exchange_seconds() / seconds, "%) in token exchanges"));

  // Peak resident memory of every rank, for sizing allocations.
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  at::Tensor peak = host->all_gather(at::tensor({static_cast<int64_t>(usage.ru_maxrss)}, at::kLong));
  std::string peaks;
  for (int64_t r = 0; r < peak.size(0); ++r) peaks += str(r ? ", " : "", "r", r, " ", peak[r][0].item<int64_t>() / 1024, " MB");
  log_info(str("collect: peak resident memory per rank: ", peaks, " (checkpoint ", checkpoint.total_bytes() >> 20,
               " MB)"));

  for (auto& task : tasks) task.collector->reduce(*host);
  write_stats_file(tmp, MPI_COMM_WORLD, provenance, config.router.top_k, tasks);
  untrack_output_temporary(tmp);  // rank 0 renames it now: no rank may remove it any more
  SMOE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  if (rank == 0) {
    output->commit();
    std::remove(work.c_str());
    log_info("collect: wrote " + out);
  }
  SMOE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  return 0;
}

}  // namespace smoe
