#include "smoe/parallel/job.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
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
  exact_ep_ = setup.exact_ep;
  at::set_num_threads(threads_);
  host_ = make_mpi_communicator();
  if (setup.device == DeviceKind::Cuda) open_gpu();
  // Rank 0's provenance on every rank, so that every rank writes the same.
  for (auto& [key, value] : make_provenance(setup)) {
    std::string v = value;
    host_->broadcast(v, 0);
    provenance_[key] = v;
  }
}

JobContext::~JobContext() = default;

// The rank's GPU: its rank on the node, modulo the GPUs it sees. NCCL between
// ranks where each has a GPU of its own; where ranks share one (NCCL refuses
// that), the host communicator with device tensors staged through pinned memory.
void JobContext::open_gpu() {
  SMOE_CHECK_INPUT(at::hasCUDA(), "--device cuda: this smoe was built against a LibTorch without CUDA");
  const int gpus = at::detail::getCUDAHooks().getNumGPUs();
  SMOE_CHECK_INPUT(gpus > 0, "--device cuda: no GPU is visible to this process (CUDA_VISIBLE_DEVICES='",
                   env("CUDA_VISIBLE_DEVICES"), "')");
  const NodeRanks node = node_ranks(host_->mpi_comm());
  gpu_ = node.rank % gpus;
  cuda_ = true;
  if (have_nccl() && node.size <= gpus) {
    device_comm_ = make_nccl_communicator(host_->mpi_comm(), gpu_);
  } else {
    device_comm_ = make_staged_communicator(*host_, device());
    if (rank() == 0)
      log_info((have_nccl() ? str(node.size, " ranks share ", gpus, " GPU(s) on a node (NCCL refuses that)")
                            : std::string("this smoe was built without NCCL")) +
               ": device tensors go over MPI, staged through pinned host memory");
  }
}

c10::Device JobContext::device() const {
  return cuda_ ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(gpu_)) : c10::Device(c10::kCPU);
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
