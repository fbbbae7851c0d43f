// What every job is given: its communicators, its device, its provenance and its
// outputs. A job is a library call `part::job(const XOptions&, JobContext&)`;
// src/cli/ parses the options, makes the context and makes the call.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "smoe/core/choices.h"
#include "smoe/core/output.h"
#include "smoe/parallel/comm.h"
#include "smoe/parallel/ep-executor.h"

namespace c10 {
struct Device;
}

namespace smoe {

// File-level provenance: names to strings, the same on every rank.
using Provenance = std::map<std::string, std::string>;

// How a job that can be stopped ended: done, or stopped by a signal after
// writing what a rerun with --resume continues from.
enum class JobEnd { Done, Checkpointed };

struct JobSetup {
  std::string job;                  // "collect"
  std::vector<std::string> args;    // the job's arguments as given (after the job's name)
  DeviceKind device = DeviceKind::Cpu;
  bool exact_ep = false;            // --exact-ep: per-(source, expert) GEMMs on GPUs too
  int threads = 0;                  // LibTorch threads per rank; 0: every core the rank may use
};

class JobContext {
 public:
  // Sets the thread count, joins the MPI job, and on cuda picks the rank's GPU
  // (its rank on the node, modulo the GPUs it sees) and bootstraps NCCL (or, where
  // ranks share a GPU, stages device tensors through host memory over MPI).
  explicit JobContext(const JobSetup& setup);
  ~JobContext();
  JobContext(const JobContext&) = delete;
  JobContext& operator=(const JobContext&) = delete;

  // CPU tensors over MPI: counts, sums, flags and gathers for output.
  Communicator& host() { return *host_; }
  // The device's tensors: NCCL (or staged MPI) on cuda, else the host communicator.
  Communicator& comm() { return device_comm_ ? *device_comm_ : *host_; }
  int rank() const { return host_->rank(); }
  int ranks() const { return host_->size(); }
  bool cuda() const { return cuda_; }
  // The device tensors live on (c10::Device, as at::Device).
  c10::Device device() const;
  const char* device_name() const { return cuda() ? "cuda" : "cpu"; }
  // How expert-parallel ranks run their experts: grouped GEMMs on GPUs unless
  // --exact-ep asks for results that do not depend on the rank count.
  ExpertGemms expert_gemms() const { return cuda_ && !exact_ep_ ? ExpertGemms::Grouped : ExpertGemms::PerSource; }
  int threads() const { return threads_; }
  // Returns once every rank has called it.
  void barrier() { host_->barrier(); }

  // software, created (UTC), command, slurm_job_id, slurm_array_job_id,
  // slurm_array_task_id: rank 0's values on every rank.
  const Provenance& provenance() const { return provenance_; }
  // The command as run ("smoe collect --model ..."), rank 0's.
  const std::string& command() const { return provenance_.at("command"); }

  // An output of the job (every rank calls, in the same order): rank 0 checks
  // the target and makes its temporary; returns the temporary's name on every
  // rank. A rank that fails removes it before the job ends.
  std::string add_output(const OutputSpec& spec);
  // Commits the output whose temporary is `temp` (every rank calls, once all
  // have written): renamed by rank 0 once every rank is here; returns once it is
  // in place.
  void commit_output(const std::string& temp);
  // Commits every output not yet committed, in add_output order.
  void commit_outputs();
  // The final path of output `i` (in add_output order).
  const std::string& output_path(size_t i) const { return outputs_.at(i).path; }

 private:
  int threads_ = 1;
  void open_gpu();

  std::unique_ptr<Communicator> host_, device_comm_;
  bool cuda_ = false, exact_ep_ = false;
  int gpu_ = 0;
  Provenance provenance_;
  struct SharedOutput {
    std::unique_ptr<AtomicOutput> output;  // rank 0's
    std::string temp, path;
    bool committed = false;
  };
  std::vector<SharedOutput> outputs_;
};

}  // namespace smoe
