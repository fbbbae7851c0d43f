// stats.h5: the routing statistics of one or more tasks (schema: docs/stats-h5.md),
// and the collect job's working file, from which a killed run resumes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "smoe/parallel/job.h"
#include "smoe/stats/collector.h"

namespace smoe {

class Communicator;

constexpr int64_t kStatsSchemaVersion = 1;

struct TaskStats {
  std::string name;
  std::string corpus;         // path
  std::string corpus_sha256;
  int64_t tokens = 0;         // tokens run (all ranks)
  int64_t sequences = 0;
  std::unique_ptr<StatsCollector> collector;
};

// Writes the reduced statistics (every rank calls; collective). `path` should be a
// temporary name, renamed by the caller once every rank has returned.
void write_stats_file(const std::string& path, Communicator& comm, const Provenance& provenance,
                      const std::vector<TaskStats>& tasks);

// The working file: every rank's own accumulators as of `phase` of task `task`
// (steps for the default schedule, layers for layerwise), written as an
// AtomicOutput (a temporary beside it, fsync, rename), so a kill during a
// checkpoint keeps the last one. Every rank calls.
void write_checkpoint(const std::string& path, JobContext& context, const std::string& fingerprint, int64_t task,
                      int64_t phase, const std::vector<TaskStats>& tasks);

// Restores this rank's accumulators; returns false when there is no working file.
// InputError when it belongs to another run (fingerprint or rank count differ).
bool read_checkpoint(const std::string& path, Communicator& comm, const std::string& fingerprint, int64_t* task,
                     int64_t* phase, std::vector<TaskStats>& tasks);

}  // namespace smoe
