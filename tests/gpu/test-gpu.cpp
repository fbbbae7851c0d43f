// The GPU check (see CMakeLists.txt beside this file): under mpirun, the NCCL
// communicator's collectives on CUDA tensors, then a checkpoint run on the GPU
// with the expert-parallel executor over NCCL against the CPU run with the local
// executor. Prints one line per check; exits non-zero if any fails.
//   mpirun -n 1 gpu-check MODEL_DIR
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cstdio>

#include "smoe/core/error.h"
#include "smoe/parallel/comm.h"
#include "smoe/parallel/ep-executor.h"
#include "smoe/parallel/mpi.h"
#include "smoe/parallel/placement.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"

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

}  // namespace

int main(int argc, char** argv) {
  smoe::MpiSession mpi(&argc, &argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: mpirun -n P gpu-check MODEL_DIR\n");
    return 2;
  }
  try {
    const int rank = mpi.rank(), P = mpi.size();
    auto nccl = smoe::make_nccl_communicator(MPI_COMM_WORLD, rank);
    const at::TensorOptions cuda = at::TensorOptions().device(at::kCUDA, rank);

    at::Tensor t = at::full({5}, static_cast<float>(rank + 1), cuda);
    nccl->all_reduce_sum(t);
    check(t.cpu()[0].item<float>() == P * (P + 1) / 2.0f, "NCCL all-reduce sum");
    at::Tensor g = nccl->all_gather(at::full({2}, static_cast<float>(rank), cuda));
    check(g.size(0) == P && g.cpu()[P - 1][0].item<float>() == P - 1.0f, "NCCL all-gather");
    at::Tensor b = at::full({3}, rank == 0 ? 9.0f : 0.0f, cuda);
    nccl->broadcast(b, 0);
    check(b.cpu()[2].item<float>() == 9.0f, "NCCL broadcast");
    std::vector<int64_t> send(static_cast<size_t>(P));
    for (int p = 0; p < P; ++p) send[static_cast<size_t>(p)] = p + 1;
    int64_t total = 0;
    for (int64_t s : send) total += s;
    at::Tensor rows = at::arange(total * 4, cuda.dtype(at::kFloat)).view({total, 4}) + 1000 * rank;
    auto recv = nccl->exchange_counts(send);
    at::Tensor got = nccl->all_to_all(rows, send, recv);
    check(got.size(0) == static_cast<int64_t>(P) * (rank + 1), "NCCL variable all-to-all sizes");
    at::Tensor gathered = nccl->gather_rows(rows, 0);
    check(rank != 0 || gathered.size(0) == total * P, "NCCL gather to root");

    smoe::Checkpoint ck(argv[1]);
    const smoe::ExpertPlacement placement = smoe::ExpertPlacement::contiguous(ck.config(), P);
    at::manual_seed(5);
    at::Tensor tokens = at::randint(0, ck.config().vocab_size, {3, 37}, at::kLong);
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      smoe::Decoder cpu(ck, {dtype, at::kCPU, {}});
      smoe::Decoder gpu(ck, {dtype, at::Device(at::kCUDA, rank),
                             [&](int64_t l, int64_t e) { return placement.owner(l, e) == rank; }});
      smoe::LocalMoeExecutor local;
      smoe::ExpertParallelExecutor ep(*nccl, placement);
      Recorder rc, rg;
      c10::NoGradGuard no_grad;
      at::Tensor lc = cpu.forward(tokens, local, &rc);
      at::Tensor lg = gpu.forward(tokens, ep, &rg).cpu();
      const float diff = (lc - lg).abs().max().item<float>();
      int64_t same = 0, all = 0;
      for (size_t i = 0; i < rc.choices.size(); ++i) {
        at::Tensor a = std::get<0>(rc.choices[i].sort(1)), c = std::get<0>(rg.choices[i].sort(1));
        same += (a == c).all(1).sum().item<int64_t>();
        all += a.size(0);
      }
      const bool f32 = dtype == at::kFloat;
      char line[256];
      std::snprintf(line, sizeof line, "%s: CUDA + NCCL expert-parallel vs CPU local: max|dlogit| %.3g, routing %lld/%lld",
                    f32 ? "f32" : "bf16", diff, static_cast<long long>(same), static_cast<long long>(all));
      check(f32 ? (diff <= 1e-4f && same == all) : (diff <= 0.1f), line);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu-check: %s\n", e.what());
    smoe::abort_job_if_parallel(1);
    return 1;
  }
  std::printf("%s\n", failures ? "gpu-check: FAILED" : "gpu-check: passed");
  return failures ? 1 : 0;
}
