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
  SharedOutput out;
  if (rank() == 0) {
    out.output = std::make_unique<AtomicOutput>(spec);
    out.temp = out.output->temp();
    out.path = out.output->path();
  }
  host_->broadcast(out.temp, 0);
  host_->broadcast(out.path, 0);
  if (rank() != 0) track_output_temporary(out.temp);
  outputs_.push_back(std::move(out));
  return outputs_.back().temp;
}

void JobContext::commit_output(const std::string& temp) {
  for (SharedOutput& out : outputs_) {
    if (out.temp != temp || out.committed) continue;
    if (rank() != 0) untrack_output_temporary(out.temp);  // rank 0 renames it now: no rank may remove it any more
    barrier();
    if (out.output) out.output->commit();
    out.committed = true;
    barrier();
    return;
  }
  SMOE_ASSERT(false, "no output pending at ", temp);
}

void JobContext::commit_outputs() {
  for (SharedOutput& out : outputs_)
    if (!out.committed) commit_output(out.temp);
}

}  // namespace smoe
