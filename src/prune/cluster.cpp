#include "smoe/prune/cluster.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <sstream>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/hash.h"
#include "smoe/core/log.h"
#include "smoe/core/numbers.h"
#include "smoe/core/options.h"
#include "smoe/io/outputs.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "smoe/parallel/job.h"
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

struct Grid {
  std::vector<std::string> tasks, methods, factors;
  int64_t size() const { return static_cast<int64_t>(tasks.size() * methods.size() * factors.size()); }
};

Grid read_grid(const std::string& path) {
  po::options_description g;
  g.add_options()("grid.tasks", po::value<std::string>()->required())(
      "grid.methods", po::value<std::string>()->required())("grid.factors", po::value<std::string>()->required());
  po::variables_map gv;
  std::istringstream in(read_file(path, "grid file", 1u << 20));
  try {
    po::store(po::parse_config_file(in, g, /*allow_unregistered=*/true), gv);
    po::notify(gv);
  } catch (const po::error& e) {
    throw InputError(str(path, ": ", e.what()));
  }
  Grid grid{split_list(gv["grid.tasks"].as<std::string>()), split_list(gv["grid.methods"].as<std::string>()),
            split_list(gv["grid.factors"].as<std::string>())};
  SMOE_CHECK_INPUT(grid.size() > 0, path, ": the grid is empty");
  return grid;
}

// Task names become file names (and words of `smoe grid`'s line): plain ones only.
void check_name(const std::string& where, const std::string& name) {
  SMOE_CHECK_INPUT(name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
                           std::string::npos &&
                       !name.empty() && name != "." && name != "..",
                   where, ": task names must be letters, digits, '_', '-' or '.', found '", clip(name), "'");
}

std::string factor_text(double factor) {
  std::ostringstream text;
  text << factor;
  return text.str();
}

// The entry to run: the grid's, or the options' own.
GridEntry entry_to_run(const ClusterJobOptions& o) {
  if (o.grid.empty()) {
    SMOE_CHECK_INPUT(!o.task.empty(), "give --task (or --grid)");
    SMOE_CHECK_INPUT(o.method.has_value(), "give --method (or --grid)");
    return {o.task, *o.method, factor_text(o.cluster.factor)};
  }
  return grid_entry(o.grid, o.index);
}

Plan make_task_plan(const ClusterJobOptions& o, const ClusterOptions& c, const TaskStatsData& stats,
                    JobContext& ctx) {
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Decoder> decoder;
  if (c.method == Method::Naee) {
    SMOE_CHECK_INPUT(!o.model.empty(), "--method naee needs --model DIR");
    checkpoint = std::make_unique<Checkpoint>(o.model);
    DecoderOptions d{at::kFloat, ctx.device(), {}};
    d.load_layers = false;
    d.load_head = false;
    decoder = std::make_unique<Decoder>(*checkpoint, d);
  }
  return make_plan(stats, c, decoder.get(), &ctx.host());
}

}  // namespace

GridEntry grid_entry(const std::string& path, std::optional<int64_t> index) {
  const Grid grid = read_grid(path);
  const int64_t i = index ? *index : slurm_array_index();
  SMOE_CHECK_INPUT(i >= 0 && i < grid.size(), path, ": ", index ? "--index " : "SLURM_ARRAY_TASK_ID ", i,
                   " outside the grid's ", grid.size(), " entries (tasks x methods x factors)");
  const size_t e = static_cast<size_t>(i);
  const size_t f = e % grid.factors.size(), m = e / grid.factors.size() % grid.methods.size(),
               t = e / grid.factors.size() / grid.methods.size();
  parse_number(grid.factors[f], path + ": factor");
  check_name(path + ": task", grid.tasks[t]);
  return {grid.tasks[t], parse_choice(method_names(), path + ": method", grid.methods[m]), grid.factors[f]};
}

int64_t slurm_array_index() {
  const char* id = std::getenv("SLURM_ARRAY_TASK_ID");
  SMOE_CHECK_INPUT(id != nullptr, "give --index (or run as a Slurm array task: SLURM_ARRAY_TASK_ID)");
  const int64_t index = parse_int(id, "SLURM_ARRAY_TASK_ID");
  SMOE_CHECK_INPUT(index >= 0, "SLURM_ARRAY_TASK_ID must not be negative, found ", index);
  return index;
}

void cluster(const ClusterJobOptions& o, JobContext& ctx) {
  const GridEntry entry = entry_to_run(o);
  ClusterOptions c = o.cluster;
  c.method = entry.method;
  c.factor = o.grid.empty() ? c.factor : parse_number(entry.factor, o.grid + ": factor");
  const char* method = choice_name(method_names(), c.method);
  SMOE_CHECK_INPUT((c.factor >= 1) != (c.experts >= 1), "give either --factor (>= 1) or --experts (>= 1)");
  SMOE_CHECK_INPUT(c.budget == Budget::Uniform || c.experts == 0, "--budget adaptive takes --factor, not --experts");
  SMOE_CHECK_INPUT(c.restarts >= 1, "--restarts must be at least 1");
  check_name("--task", entry.task);
  OutputSpec spec = hdf5_output(
      replace_all(replace_all(replace_all(o.out, "{task}", entry.task), "{method}", method), "{factor}", entry.factor),
      "cluster", "smoe-plan");
  spec.overwrite = o.overwrite;
  spec.inputs = o.inputs;
  const std::string temp = ctx.add_output(spec);
  const TaskStatsData stats = read_task_stats(o.stats, entry.task);
  Plan plan = make_task_plan(o, c, stats, ctx);
  plan.attrs = {{"method", method},
                {"task", entry.task},
                {"stats", o.stats},
                {"stats_sha256", sha256_file(o.stats)},
                {"budget", choice_name(budget_names(), c.budget)},
                {"factor", entry.factor},
                {"experts", std::to_string(c.experts)},
                {"seed", std::to_string(c.seed)},
                {"merge_weight", choice_name(merge_weight_names(), c.merge_weight)},
                {"created", ctx.provenance().at("created")},
                {"software", ctx.provenance().at("software")}};
  for (const auto& [k, v] : stats.attrs)
    if (k == "model" || k == "model_type" || k == "model_config_sha256") plan.attrs[k] = v;
  int64_t before = 0, after = 0;
  for (const auto& lp : plan.layers) {
    before += lp.num_experts;
    after += lp.num_groups();
  }
  if (ctx.rank() == 0) write_plan(temp, plan);
  ctx.commit_outputs();
  log_info(str("cluster: ", method, " on task '", entry.task, "': ", before, " experts -> ", after, " in ",
               plan.layers.size(), " MoE layers; wrote ", ctx.output_path(0)));
}

}  // namespace smoe
