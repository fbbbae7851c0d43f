// smoe: one binary, one subcommand per job.
#include <c10/util/Exception.h>

#include <cstring>
#include <exception>
#include <iostream>
#include <malloc.h>
#include <optional>
#include <string>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/output.h"
#include "smoe/core/signals.h"
#include "smoe/parallel/mpi.h"
#include "smoe/text/unicode.h"

namespace smoe {

JobSetup job_setup(const std::string& job, int argc, char** argv, const po::variables_map& vm) {
  JobSetup s;
  s.job = job;
  s.args.assign(argv + 1, argv + argc);
  if (vm.count("device")) s.device = parse_choice(device_names(), "--device", vm["device"].as<std::string>());
  if (vm.count("threads")) s.threads = vm["threads"].as<int>();
  if (vm.count("exact-ep")) s.exact_ep = vm["exact-ep"].as<bool>();
  return s;
}

void add_device_option(po::options_description& opts) {
  opts.add_options()("device", po::value<std::string>()->default_value("cpu"),
                     "cpu (MPI between ranks) or cuda (rank r on a node uses GPU r % GPUs; NCCL between ranks)")(
      "exact-ep", po::bool_switch(),
      "on cuda, expert GEMMs per (source rank, expert) as on cpu: results independent of the rank count, "
      "slower than the default grouped GEMMs");
}

void add_dtype_option(po::options_description& opts) {
  opts.add_options()("dtype", po::value<std::string>()->default_value("auto"),
                     ("compute dtype: " + choice_list(dtype_names()) + ", or auto (bf16 on cuda, f32 on cpu)").c_str());
}

ComputeDtype compute_dtype(const po::variables_map& vm) {
  const std::string dtype = vm["dtype"].as<std::string>();
  if (dtype != "auto") return parse_choice(dtype_names(), "--dtype", dtype);
  const bool cuda = vm.count("device") && parse_choice(device_names(), "--device", vm["device"].as<std::string>()) ==
                                              DeviceKind::Cuda;
  return cuda ? ComputeDtype::BF16 : ComputeDtype::F32;
}

}  // namespace smoe

namespace {

struct Job {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
  bool mpi = true;  // the job's ranks talk; the others start without MPI (a second less)
};

const Job kJobs[] = {
    {"score", smoe::run_score, "run a checkpoint over a corpus: perplexity, and optionally the logits"},
    {"collect", smoe::run_collect, "gather routing statistics over task corpora into stats.h5"},
    {"cluster", smoe::run_cluster, "group each layer's experts for a task: a pruning plan (plan.h5)"},
    {"grid", smoe::run_grid, "print one entry of a grid file (task, method, factor), as cluster --grid reads it", false},
    {"prune", smoe::run_prune, "apply a plan to a checkpoint: the pruned checkpoint", false},
    {"eval", smoe::run_eval, "evaluate a checkpoint on task eval sets: results.json"},
    {"train", smoe::run_train, "train a small SMoE from scratch, data parallel"},
    {"report", smoe::run_report, "the study's table and plot from many results.json files", false},
    {"tokenize", smoe::run_tokenize, "text corpora to token ids (JSONL or Megatron's indexed dataset), or back"},
    {"data", smoe::run_data, "write the built-in synthetic task suite (smoe data synth)", false},
    {"plan-resources", smoe::run_plan_resources, "memory per rank, all-to-all volume and time for a model, from config.json", false},
};

void print_usage(std::ostream& os) {
  os << "usage: smoe JOB [options]   (smoe JOB --help for a job's options)\n\n"
     << "smoe " << SMOE_VERSION << ": task-specific expert pruning of sparse Mixture-of-Experts models\n\njobs:\n";
  for (const auto& j : kJobs) os << "  " << j.name << std::string(16 - std::strlen(j.name), ' ') << j.summary << "\n";
}

// A message as logged: whatever a check quoted, at most 2,000 bytes reach the log.
// Control characters other than newline and tab (terminal escapes from a hostile
// file name, say) are shown as '?', bytes that are not UTF-8 as U+FFFD.
std::string bounded(const std::string& message) {
  std::string out = smoe::utf8_lossy(message.size() <= 2000 ? message : message.substr(0, 2000));
  for (char& c : out)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') || c == 0x7f) c = '?';
  return message.size() <= 2000 ? out : out + "... (" + std::to_string(message.size()) + " bytes)";
}

// Runs a job; a failure on any rank is logged by that rank and, under MPI with
// more than one rank, ends the whole job (peers may be blocked in a collective).
int run_job(const Job& job, int argc, char** argv) {
  int status = 0;
  try {
    std::optional<smoe::MpiSession> mpi;
    if (job.mpi) mpi.emplace(&argc, &argv);
    try {
      return job.run(argc - 1, argv + 1);
    } catch (const smoe::Error& e) {
      smoe::log_error(bounded(e.what()));
      status = e.exit_status();
    } catch (const c10::Error& e) {
      smoe::log_error(bounded(std::string("LibTorch: ") + e.what_without_backtrace()));
      status = 1;
    } catch (const std::exception& e) {
      smoe::log_error(bounded(e.what()));
      status = 1;
    }
    smoe::remove_output_temporaries();  // what other ranks write, and checkpoints half written
    smoe::abort_job_if_parallel(status);
  } catch (const smoe::Error& e) {  // MPI itself failed to start
    smoe::log_error(e.what());
    status = e.exit_status();
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  // The forward pass allocates and frees the same few-MB activations for every
  // batch. glibc would serve them with fresh mmaps (or trim its heap after each),
  // faulting and zeroing their pages every time; keep them in the heap instead.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  smoe::start_signal_thread();
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (name == "--version") {
    std::cout << "smoe " << SMOE_VERSION << "\n";
    return 0;
  }
  for (const auto& job : kJobs)
    if (name == job.name) return run_job(job, argc, argv);
  std::cerr << "smoe: unknown job '" << name << "'\n\n";
  print_usage(std::cerr);
  return 2;
}
