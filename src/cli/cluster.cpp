// smoe cluster: statistics in, a pruning plan out, for one (task, method, target).
// A Slurm array covers a grid of them with --grid FILE.ini --index I.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/hash.h"
#include "smoe/core/log.h"
#include "smoe/core/file.h"
#include "smoe/core/numbers.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/dist/comm.h"
#include "smoe/dist/mpi.h"
#include "smoe/io/checkpoint.h"
#include "smoe/io/outputs.h"
#include "smoe/model/decoder.h"
#include "smoe/prune/methods.h"
#include "smoe/prune/plan.h"
#include "smoe/stats/stats-reader.h"

namespace smoe {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

}  // namespace

int run_cluster(int argc, char** argv) {
  po::options_description opts("smoe cluster options");
  opts.add_options()("stats", po::value<std::string>()->required(), "statistics file from smoe collect")(
      "task", po::value<std::string>(), "task in the statistics file")(
      "method", po::value<std::string>(), "frequency, uncurl, mc-smoe, hc-smoe, reap or naee")(
      "factor", po::value<double>(), "pruning factor: keep E / factor experts per layer (or in total, adaptive)")(
      "experts", po::value<int64_t>(), "or keep this many experts per layer")(
      "budget", po::value<std::string>()->default_value("uniform"), "uniform or adaptive")(
      "out", po::value<std::string>()->required(),
      "plan file to write; {task}, {method} and {factor} are replaced (for grids)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed for clustering")(
      "restarts", po::value<int>()->default_value(10), "k-means restarts (uncurl)")(
      "merge-weight", po::value<std::string>()->default_value("gate_sum"), "merge weights: gate_sum or count")(
      "router", po::value<std::string>()->default_value("most-used"),
      "router row of a merged group: most-used (the reference member's) or weighted (the merge-weighted mean)")(
      "model", po::value<std::string>(), "checkpoint folder (naee only: it runs the experts)")(
      "naee-limit", po::value<int64_t>()->default_value(20000),
      "naee: search every kept subset while there are at most this many, greedy beyond")(
      "grid", po::value<std::string>(), "INI file with [grid] tasks, methods, factors: run entry --index of it")(
      "index", po::value<int64_t>(), "entry of the grid (default: $SLURM_ARRAY_TASK_ID)")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"cluster", "--stats stats.h5 --task NAME --method M --factor F --out plan.h5",
                                      "Groups each MoE layer's experts for one task by one method and writes the "
                                      "plan (groups, merge weights, router policy) to an HDF5 file."},
                         opts, vm))
    return 0;
  at::set_num_threads(resolve_threads(vm["threads"].as<int>()));

  std::string task = vm.count("task") ? vm["task"].as<std::string>() : "";
  std::string method = vm.count("method") ? vm["method"].as<std::string>() : "";
  double factor = vm.count("factor") ? vm["factor"].as<double>() : 0.0;
  if (vm.count("grid")) {
    const std::string grid = vm["grid"].as<std::string>();
    po::options_description g;
    g.add_options()("grid.tasks", po::value<std::string>()->required())(
        "grid.methods", po::value<std::string>()->required())("grid.factors", po::value<std::string>()->required());
    po::variables_map gv;
    std::istringstream in(read_file(grid, "grid file", 1u << 20));
    try {
      po::store(po::parse_config_file(in, g, /*allow_unregistered=*/true), gv);
      po::notify(gv);
    } catch (const po::error& e) {
      throw InputError(str(grid, ": ", e.what()));
    }
    const auto tasks = split_list(gv["grid.tasks"].as<std::string>());
    const auto methods = split_list(gv["grid.methods"].as<std::string>());
    const auto factors = split_list(gv["grid.factors"].as<std::string>());
    const int64_t size = static_cast<int64_t>(tasks.size() * methods.size() * factors.size());
    SMOE_CHECK_INPUT(size > 0, grid, ": the grid is empty");
    int64_t index = -1;
    if (vm.count("index")) {
      index = vm["index"].as<int64_t>();
    } else if (const char* id = std::getenv("SLURM_ARRAY_TASK_ID")) {
      index = parse_int(id, "SLURM_ARRAY_TASK_ID");
    }
    SMOE_CHECK_INPUT(index >= 0 && index < size, grid, ": --index ", index, " outside the grid's ", size,
                     " entries (tasks x methods x factors)");
    const size_t f = static_cast<size_t>(index) % factors.size();
    const size_t m = static_cast<size_t>(index) / factors.size() % methods.size();
    const size_t t = static_cast<size_t>(index) / factors.size() / methods.size();
    task = tasks[t];
    method = methods[m];
    factor = parse_number(factors[f], grid + ": factor");
  }
  SMOE_CHECK_INPUT(!task.empty(), "give --task (or --grid)");
  SMOE_CHECK_INPUT(!method.empty(), "give --method (or --grid)");
  ClusterOptions o;
  o.method = method;
  o.budget = vm["budget"].as<std::string>();
  SMOE_CHECK_INPUT(o.budget == "uniform" || o.budget == "adaptive", "--budget must be uniform or adaptive");
  o.factor = factor;
  o.experts = vm.count("experts") ? vm["experts"].as<int64_t>() : 0;
  SMOE_CHECK_INPUT((o.factor >= 1) != (o.experts >= 1), "give either --factor (>= 1) or --experts (>= 1)");
  SMOE_CHECK_INPUT(o.budget == "uniform" || o.experts == 0, "--budget adaptive takes --factor, not --experts");
  o.seed = vm["seed"].as<uint64_t>();
  o.restarts = vm["restarts"].as<int>();
  SMOE_CHECK_INPUT(o.restarts >= 1, "--restarts must be at least 1");
  o.merge_weight = vm["merge-weight"].as<std::string>();
  o.router_policy = vm["router"].as<std::string>();
  o.naee_limit = vm["naee-limit"].as<int64_t>();

  for (const auto* name : {&task, &method})
    SMOE_CHECK_INPUT(name->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
                         std::string::npos && *name != "." && *name != "..",
                     "task and method names must be letters, digits, '_', '-' or '.', found '", clip(*name), "'");
  const std::string stats_path = vm["stats"].as<std::string>();
  std::ostringstream factor_text;
  factor_text << factor;
  std::string out = vm["out"].as<std::string>();
  out = replace_all(replace_all(replace_all(out, "{task}", task), "{method}", method), "{factor}", factor_text.str());
  std::unique_ptr<Communicator> comm = make_mpi_communicator();
  std::unique_ptr<Output> output;
  if (comm->rank() == 0) {
    OutputSpec spec = hdf5_output(out, "cluster", "smoe-plan");
    spec.overwrite = vm["overwrite"].as<bool>();
    spec.inputs = option_inputs(vm, {"stats", "model", "grid"});
    output = std::make_unique<Output>(spec);
  }
  share_output_temporary(output.get(), MPI_COMM_WORLD);
  const TaskStatsData stats = read_task_stats(stats_path, task);

  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Decoder> decoder;
  if (method == "naee") {
    SMOE_CHECK_INPUT(vm.count("model"), "--method naee needs --model DIR");
    checkpoint = std::make_unique<Checkpoint>(vm["model"].as<std::string>());
    DecoderOptions d{at::kFloat, at::kCPU, {}};
    d.load_layers = false;
    d.load_head = false;
    decoder = std::make_unique<Decoder>(*checkpoint, d);
  }
  Plan plan = make_plan(stats, o, decoder.get(), comm.get());
  const std::string created = utc_now();
  plan.attrs = {{"method", method},
                {"task", task},
                {"stats", stats_path},
                {"stats_sha256", sha256_file(stats_path)},
                {"budget", o.budget},
                {"factor", factor_text.str()},
                {"experts", std::to_string(o.experts)},
                {"seed", std::to_string(o.seed)},
                {"merge_weight", o.merge_weight},
                {"created", created},
                {"software", std::string("smoe ") + SMOE_VERSION}};
  for (const auto& [k, v] : stats.attrs)
    if (k == "model" || k == "model_config_sha256" || k == "model_type") plan.attrs[k] = v;

  int64_t before = 0, after = 0;
  for (const auto& lp : plan.layers) {
    before += lp.num_experts;
    after += lp.num_groups();
  }
  if (comm->rank() == 0) {
    write_plan(output->temp(), plan);
    output->commit();
    log_info(str("cluster: ", method, " on task '", task, "': ", before, " experts -> ", after, " in ",
                 plan.layers.size(), " MoE layers; wrote ", out));
  }
  return 0;
}

}  // namespace smoe
