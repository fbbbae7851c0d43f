#include "smoe/parallel/job.h"

#include <ATen/Parallel.h>
#include <c10/core/Device.h>

#include <cstdlib>

#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/parallel/mpi.h"

namespace smoe {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

Provenance make_provenance(const JobSetup& setup) {
  std::string command = "smoe " + setup.job;
  for (const std::string& a : setup.args) command += " " + a;
  return {{"software", std::string("smoe ") + SMOE_VERSION},
          {"created", utc_now()},
          {"command", command},
          {"slurm_job_id", env("SLURM_JOB_ID")},
          {"slurm_array_job_id", env("SLURM_ARRAY_JOB_ID")},
          {"slurm_array_task_id", env("SLURM_ARRAY_TASK_ID")}};
}

}  // namespace

JobContext::JobContext(const JobSetup& setup) {
  SMOE_CHECK_INPUT(setup.threads >= 0, "--threads must not be negative");
  threads_ = resolve_threads(setup.threads);
  at::set_num_threads(threads_);
  host_ = make_mpi_communicator();
  if (setup.device == DeviceKind::Cuda) {
    gpu_ = local_rank();
    nccl_ = make_nccl_communicator(host_->mpi_comm(), gpu_);
  }
  // Rank 0's provenance on every rank, so that every rank writes the same.
  for (auto& [key, value] : make_provenance(setup)) {
    std::string v = value;
    host_->broadcast(v, 0);
    provenance_[key] = v;
  }
}

JobContext::~JobContext() = default;

c10::Device JobContext::device() const {
  return cuda() ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(gpu_)) : c10::Device(c10::kCPU);
}

std::string JobContext::add_output(const OutputSpec& spec) {
  std::string temp;
  if (rank() == 0) {
    outputs_.push_back(std::make_unique<Output>(spec));
    temp = outputs_.back()->temp();
  }
  host_->broadcast(temp, 0);
  if (rank() != 0) track_output_temporary(temp);
  temps_.push_back(temp);
  std::string path = rank() == 0 ? outputs_.back()->path() : "";
  host_->broadcast(path, 0);
  paths_.push_back(path);
  return temp;
}

void JobContext::commit_outputs() {
  for (const std::string& temp : temps_)
    if (rank() != 0) untrack_output_temporary(temp);  // rank 0 renames it now: no rank may remove it any more
  barrier();
  for (auto& output : outputs_) output->commit();
  barrier();
}

}  // namespace smoe
