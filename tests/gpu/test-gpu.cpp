// The GPU check (tests/gpu/run.sh builds and runs it): under mpirun, the device
// communicator's collectives (NCCL where each rank has a GPU of its own, else MPI
// staged through pinned memory), then a checkpoint run on the device,
// expert-parallel with per-source and with grouped expert GEMMs, against the CPU
// run with the local executor, and generation with a key/value cache against
// whole-sequence forward passes. One line per check; exits non-zero if any fails.
// With `cpu` the same checks run on the CPU (the communicator then MPI staged
// through host memory): the test command runs them so, tests/gpu/run.sh on the GPU.
//   mpirun -n P smoe-gpu-check MODEL_DIR [cuda|cpu]
#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/GradMode.h>

#include <cstdio>
#include <string>

#include "smoe/core/error.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "smoe/parallel/comm.h"
#include "smoe/parallel/ep-executor.h"
#include "smoe/parallel/mpi.h"
#include "smoe/parallel/placement.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

class Recorder : public smoe::RoutingObserver {
 public:
  std::vector<at::Tensor> choices;
  void on_routing(const smoe::MoeLayer&, const at::Tensor&, const smoe::Routing& r) override {
    choices.push_back(r.experts.cpu());
  }
};

void check_collectives(smoe::Communicator& comm, const at::Device& device, const std::string& name) {
  const int rank = comm.rank(), P = comm.size();
  const auto on = at::TensorOptions().device(device);
  at::Tensor t = at::full({5}, static_cast<float>(rank + 1), on);
  comm.all_reduce_sum(t);
  check(t.device() == device && t.cpu()[0].item<float>() == P * (P + 1) / 2.0f, name + " all-reduce sum");
  at::Tensor g = comm.all_gather(at::full({2}, static_cast<float>(rank), on));
  check(g.device() == device && g.size(0) == P && g.cpu()[P - 1][0].item<float>() == P - 1.0f, name + " all-gather");
  at::Tensor b = at::full({3}, rank == 0 ? 9.0f : 0.0f, on);
  comm.broadcast(b, 0);
  check(b.cpu()[2].item<float>() == 9.0f, name + " broadcast");
  std::vector<int64_t> send(static_cast<size_t>(P));
  int64_t total = 0;
  for (int p = 0; p < P; ++p) total += send[static_cast<size_t>(p)] = p + 1;
  at::Tensor rows = at::arange(total * 4, on.dtype(at::kFloat)).view({total, 4}) + 1000 * rank;
  const std::vector<int64_t> recv = comm.exchange_counts(send);
  at::Tensor got = comm.all_to_all(rows, send, recv);
  const at::Tensor first = got.cpu()[0];  // rank 0's rows for this rank start at 1000 * 0 + rank's offset
  check(got.device() == device && got.size(0) == static_cast<int64_t>(P) * (rank + 1) &&
            first[0].item<float>() == static_cast<float>(4 * (rank * (rank + 1) / 2)),
        name + " variable all-to-all");
  at::Tensor gathered = comm.gather_rows(rows, 0);
  check(rank != 0 || gathered.size(0) == total * P, name + " gather to root");
}

// The decoder on the device, expert-parallel, against the CPU with every expert.
void check_decoder(const smoe::Checkpoint& ck, smoe::Communicator& comm, const at::Device& device) {
  const int rank = comm.rank(), P = comm.size();
  const smoe::ExpertPlacement placement = smoe::ExpertPlacement::contiguous(ck.config(), P);
  at::manual_seed(5);
  const at::Tensor tokens = at::randint(0, ck.config().vocab_size, {3, 37}, at::kLong);
  c10::NoGradGuard no_grad;
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    smoe::Decoder cpu(ck, {dtype, at::kCPU, {}});
    smoe::Decoder dev(ck, {dtype, device, [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; }});
    smoe::LocalMoeExecutor local;
    Recorder rc;
    const at::Tensor lc = cpu.forward(tokens, local, &rc);
    for (smoe::ExpertGemms gemms : {smoe::ExpertGemms::PerSource, smoe::ExpertGemms::Grouped}) {
      smoe::ExpertParallelExecutor ep(comm, placement, 0.0, gemms);
      Recorder rg;
      const at::Tensor lg = dev.forward(tokens, ep, &rg).cpu();
      const float diff = (lc - lg).abs().max().item<float>();
      int64_t same = 0, all = 0;
      for (size_t i = 0; i < rc.choices.size(); ++i) {
        at::Tensor a = std::get<0>(rc.choices[i].sort(1)), c = std::get<0>(rg.choices[i].sort(1));
        same += (a == c).all(1).sum().item<int64_t>();
        all += a.size(0);
      }
      const bool f32 = dtype == at::kFloat;
      char line[256];
      std::snprintf(line, sizeof line, "%s, %s expert GEMMs: expert-parallel on %s vs local on the CPU: "
                    "max|dlogit| %.3g, routing %lld/%lld", f32 ? "f32" : "bf16",
                    gemms == smoe::ExpertGemms::Grouped ? "grouped" : "per-source", device.str().c_str(), diff,
                    static_cast<long long>(same), static_cast<long long>(all));
      check(f32 ? (diff <= 1e-4f && same == all) : (diff <= 0.1f), line);
    }
  }
}

// Generation with a key/value cache: a 16-token prompt, then one token at a
// time, against the whole sequences' forward pass.
void check_kv_cache(const smoe::Checkpoint& ck, smoe::Communicator& comm, const at::Device& device) {
  const int rank = comm.rank(), P = comm.size();
  const smoe::ExpertPlacement placement = smoe::ExpertPlacement::contiguous(ck.config(), P);
  smoe::Decoder dev(ck, {at::kFloat, device, [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; }});
  smoe::ExpertParallelExecutor ep(comm, placement);
  c10::NoGradGuard no_grad;
  at::manual_seed(7);
  const at::Tensor seq = at::randint(0, ck.config().vocab_size, {2, 24}, at::kLong);
  const at::Tensor whole = dev.forward(seq, ep).cpu();
  smoe::DecoderCache cache;
  std::vector<at::Tensor> steps = {dev.head(dev.hidden_states(seq.narrow(1, 0, 16), ep, nullptr, &cache)).cpu()};
  for (int64_t s = 16; s < 24; ++s)
    steps.push_back(dev.head(dev.hidden_states(seq.narrow(1, s, 1), ep, nullptr, &cache)).cpu());
  const float diff = (at::cat(steps, 1) - whole).abs().max().item<float>();
  char line[160];
  std::snprintf(line, sizeof line, "f32: generation with a key/value cache vs whole sequences: max|dlogit| %.3g, "
                "cache of %lld positions", diff, static_cast<long long>(cache.length()));
  check(diff <= 1e-4f && cache.length() == 24, line);
}

}  // namespace

int main(int argc, char** argv) {
  smoe::MpiSession mpi(&argc, &argv);
  const std::string where = argc > 2 ? argv[2] : "cuda";
  if (argc < 2 || (where != "cuda" && where != "cpu")) {
    std::fprintf(stderr, "usage: mpirun -n P smoe-gpu-check MODEL_DIR [cuda|cpu]\n");
    return 2;
  }
  try {
    const bool on_cpu = where == "cpu";
    const int gpus = on_cpu ? 1 : at::detail::getCUDAHooks().getNumGPUs();
    SMOE_CHECK_INPUT(gpus > 0, "no GPU is visible");
    const smoe::NodeRanks node = smoe::node_ranks(MPI_COMM_WORLD);
    const int index = node.rank % gpus;
    const at::Device device = on_cpu ? at::Device(at::kCPU) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
    auto host = smoe::make_mpi_communicator();
    const bool nccl = !on_cpu && smoe::have_nccl() && node.size <= gpus;
    auto comm = nccl ? smoe::make_nccl_communicator(MPI_COMM_WORLD, index) : smoe::make_staged_communicator(*host, device);
    check_collectives(*comm, device, nccl ? "NCCL" : "staged MPI");
    smoe::Checkpoint ck(argv[1]);
    check_decoder(ck, *comm, device);
    check_kv_cache(ck, *comm, device);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smoe-gpu-check: %s\n", e.what());
    smoe::abort_job_if_parallel(1);
    return 1;
  }
  std::printf("%s\n", failures ? "smoe-gpu-check: FAILED" : "smoe-gpu-check: passed");
  return failures ? 1 : 0;
}
