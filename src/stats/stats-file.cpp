#include "smoe/stats/stats-file.h"

#include <ATen/ATen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "smoe/core/error.h"
#include "smoe/core/output.h"
#include "smoe/io/hdf5.h"
#include "smoe/parallel/shared-file.h"

namespace smoe {

namespace {

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

void write_stats_file(const std::string& path, Communicator& comm, const Provenance& provenance,
                      const std::vector<TaskStats>& tasks) {
  const int rank = comm.rank();
  h5::Handle file = create_shared_file(path, comm);
  const hid_t root = file.get();
  h5::write_attr(root, "format", std::string("smoe-stats"));
  h5::write_attr(root, "schema_version", kStatsSchemaVersion);
  for (const auto& [key, value] : provenance) h5::write_attr(root, key, value);
  h5::write_attr(root, "ranks", static_cast<int64_t>(comm.size()));
  h5::write_attr(root, "complete", static_cast<int64_t>(0));

  h5::Handle task_root = h5::create_group(root, "tasks");
  for (const auto& task : tasks) {
    h5::Handle tg = h5::create_group(task_root.get(), task.name);
    h5::write_attr(tg.get(), "corpus", task.corpus);
    h5::write_attr(tg.get(), "corpus_sha256", task.corpus_sha256);
    h5::write_attr(tg.get(), "tokens", task.tokens);
    h5::write_attr(tg.get(), "sequences", task.sequences);
    h5::Handle layers = h5::create_group(tg.get(), "layers");
    for (auto& [l, s] : task.collector->layers()) {
      h5::Handle lg = h5::create_group(layers.get(), std::to_string(l));
      const hid_t g = lg.get();
      h5::write_attr(g, "layer", s.layer);
      h5::write_attr(g, "num_experts", s.num_experts);
      h5::write_attr(g, "top_k", s.top_k);
      h5::write_attr(g, "tokens", s.tokens);
      for (const SummedStat& f : summed_stats()) h5::write_tensor(g, f.name, s.*f.field, 0, rank);
      if (s.out_mean.defined()) h5::write_tensor(g, "out_mean", s.out_mean, 0, rank);
      if (s.hidden_sample_keys.defined()) {
        h5::write_tensor(g, "hidden_sample", s.hidden_sample, 0, rank);
        h5::write_tensor(g, "hidden_sample_keys", s.hidden_sample_keys, 0, rank);
      }
    }
  }
  // Complete only once everything above is written.
  h5::Handle attr(H5Aopen(root, "complete", H5P_DEFAULT), H5Aclose);
  const int64_t one = 1;
  if (attr.get() < 0 || H5Awrite(attr.get(), H5T_NATIVE_INT64, &one) < 0)
    throw RuntimeError(str(path, ": cannot set the complete flag"));
}

OutputSpec working_file_spec(const std::string& path) {
  OutputSpec spec;
  spec.option = "--out";
  spec.path = path;
  spec.job = "collect";
  spec.is_own = [](const std::string& p) { return h5::file_format(p) == "smoe-collect-checkpoint"; };
  return spec;
}

void write_checkpoint(const std::string& path, JobContext& ctx, const std::string& fingerprint, int64_t task,
                      int64_t phase, const std::vector<TaskStats>& tasks) {
  const int rank = ctx.rank(), ranks = ctx.ranks();
  const std::string temp = ctx.add_output(working_file_spec(path));
  {
    h5::Handle file = create_shared_file(temp, ctx.host());
    h5::write_attr(file.get(), "format", std::string("smoe-collect-checkpoint"));
    h5::write_attr(file.get(), "fingerprint", fingerprint);
    h5::write_attr(file.get(), "ranks", static_cast<int64_t>(ranks));
    h5::write_attr(file.get(), "task", task);
    h5::write_attr(file.get(), "phase", phase);
    for (int64_t t = 0; t <= task && t < static_cast<int64_t>(tasks.size()); ++t) {
      const TaskStats& ts = tasks[static_cast<size_t>(t)];
      h5::Handle tg = h5::create_group(file.get(), "task" + std::to_string(t));
      h5::write_attr(tg.get(), "tokens", ts.tokens);  // totals of the tasks done; 0 for the current one
      h5::write_attr(tg.get(), "sequences", ts.sequences);
      for (auto& [l, s] : ts.collector->layers()) {
        h5::Handle lg = h5::create_group(tg.get(), std::to_string(l));
        for (const auto& [name, value] : layer_state(s, ts.collector->options().sample_size))
          h5::write_rank_slabs(lg.get(), name, value, rank, ranks);
      }
    }
  }
  // On disk before it replaces the previous checkpoint, and the rename on disk before the run goes on.
  ctx.commit_output(temp);
}

bool read_checkpoint(const std::string& path, Communicator& comm, const std::string& fingerprint, int64_t* task,
                     int64_t* phase, std::vector<TaskStats>& tasks) {
  if (!file_exists(path)) return false;
  const int rank = comm.rank(), ranks = comm.size();
  h5::Handle file = open_shared_file(path, comm);
  SMOE_CHECK_INPUT(h5::read_attr_string(file.get(), "format", path) == "smoe-collect-checkpoint", path,
                   ": not a working file of smoe collect");
  const int64_t saved_ranks = h5::read_attr_int(file.get(), "ranks", path);
  SMOE_CHECK_INPUT(saved_ranks == ranks, path, ": written by ", saved_ranks, " ranks; resume with the same count (now ",
                   ranks, ")");
  SMOE_CHECK_INPUT(h5::read_attr_string(file.get(), "fingerprint", path) == fingerprint, path,
                   ": written for another model, corpus or options; remove it or rerun without --resume");
  *task = h5::read_attr_int(file.get(), "task", path);
  *phase = h5::read_attr_int(file.get(), "phase", path);
  SMOE_CHECK_INPUT(*task >= 0 && *task < static_cast<int64_t>(tasks.size()) && *phase >= 0, path,
                   ": task ", *task, " / phase ", *phase, " out of range");
  for (int64_t t = 0; t <= *task; ++t) {
    h5::Handle tg = h5::open_group(file.get(), "task" + std::to_string(t), path);
    TaskStats& ts = tasks[static_cast<size_t>(t)];
    if (t < *task) {
      ts.tokens = h5::read_attr_int(tg.get(), "tokens", path);
      ts.sequences = h5::read_attr_int(tg.get(), "sequences", path);
    }
    for (auto& [l, s] : ts.collector->layers()) {
      h5::Handle lg = h5::open_group(tg.get(), std::to_string(l), path);
      std::map<std::string, at::Tensor> state;
      for (const auto& [name, value] : layer_state(s, ts.collector->options().sample_size))
        state[name] = h5::read_rank_slab(lg.get(), name, rank, path);
      load_layer_state(s, state);
    }
  }
  return true;
}

}  // namespace smoe
