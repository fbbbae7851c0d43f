// smoe cluster: statistics in, a pruning plan out, for one (task, method,
// target); a Slurm array covers a grid of them (an INI file's [grid] tasks,
// methods and factors), one entry per array index.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "smoe/prune/methods.h"

namespace smoe {

class JobContext;

// One entry of a grid: entries run factors fastest, then methods, then tasks.
struct GridEntry {
  std::string task;
  Method method = Method::Frequency;
  std::string factor;  // as the grid writes it: what file names carry
};
// Entry `index` of a grid file, by default the Slurm array index; the one place
// that maps an index to an entry (slurm/prune-eval.sbatch asks `smoe grid`).
// InputError naming the file for a bad grid, and --index or SLURM_ARRAY_TASK_ID
// for an index outside it.
GridEntry grid_entry(const std::string& grid, std::optional<int64_t> index);
// The Slurm array index (SLURM_ARRAY_TASK_ID); InputError when unset or not a
// non-negative integer.
int64_t slurm_array_index();

struct ClusterJobOptions {
  std::string stats;                  // stats.h5
  std::string task;                   // from the grid when grid is set
  std::optional<Method> method;
  ClusterOptions cluster;             // its method and factor: from the grid when grid is set
  std::string grid;                   // INI file; "": one entry given by the options
  std::optional<int64_t> index;       // grid entry; default: slurm_array_index()
  std::string out;                    // plan.h5; {task}, {method} and {factor} are replaced
  std::string model;                  // naee only
  std::vector<std::string> inputs;    // other files the options name (--config)
  bool overwrite = false;
};

// Every rank calls (NAEE shares its search over the ranks); rank 0 writes the plan.
void cluster(const ClusterJobOptions& options, JobContext& context);

}  // namespace smoe
