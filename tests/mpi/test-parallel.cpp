// Communicators, placement and the expert-parallel executor, run under mpirun
// with 1 to 4 ranks.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <fstream>

#include "smoe/core/error.h"
#include "smoe/parallel/comm.h"
#include "smoe/parallel/ep-executor.h"
#include "smoe/parallel/placement.h"
#include "smoe/model/checkpoint.h"
#include "smoe/parallel/share-corpus.h"
#include "smoe/text/corpus.h"
#include "smoe/text/tokenizer.h"
#include "smoe/model/decoder.h"
#include "smoe/model/router.h"
#include "../unit/tiny-model.h"

namespace smoe {
namespace {

struct World {
  std::unique_ptr<Communicator> comm = make_mpi_communicator();
  int rank = comm->rank();
  int size = comm->size();
};

// The collectives on communicator `comm` of the world `w`.
void check_collectives(const World& w, Communicator& comm) {
  at::Tensor t = at::full({3}, static_cast<double>(w.rank + 1), at::kDouble);
  comm.all_reduce_sum(t);
  EXPECT_DOUBLE_EQ(t[0].item<double>(), w.size * (w.size + 1) / 2.0);
  at::Tensor m = at::full({2}, static_cast<int64_t>(w.rank), at::kLong);
  comm.all_reduce_max(m);
  EXPECT_EQ(m[1].item<int64_t>(), w.size - 1);

  at::Tensor g = comm.all_gather(at::full({2, 2}, static_cast<float>(w.rank), at::kFloat));
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{w.size, 2, 2}));
  for (int p = 0; p < w.size; ++p) EXPECT_EQ(g[p][1][1].item<float>(), static_cast<float>(p));

  at::Tensor b = at::full({4}, static_cast<float>(w.rank == w.size - 1 ? 7 : -1), at::kFloat);
  comm.broadcast(b, w.size - 1);
  EXPECT_TRUE(at::equal(b, at::full({4}, 7.0f)));

  at::Tensor rows = at::arange(w.rank + 1, at::kLong).unsqueeze(1).repeat({1, 3}) + 100 * w.rank;
  at::Tensor all = comm.gather_rows(rows, 0);
  if (w.rank == 0) {
    EXPECT_EQ(all.size(0), w.size * (w.size + 1) / 2);
    EXPECT_EQ(all[all.size(0) - 1][2].item<int64_t>(), 100 * (w.size - 1) + w.size - 1);
  } else {
    EXPECT_FALSE(all.defined());
  }
}

// Rank r sends (r + p) % 3 rows to rank p over `comm`; row values encode
// (source, destination, row).
void check_variable_all_to_all(const World& w, Communicator& comm) {
  std::vector<int64_t> send_counts;
  std::vector<at::Tensor> parts;
  for (int p = 0; p < w.size; ++p) {
    const int64_t n = (w.rank + p) % 3;
    send_counts.push_back(n);
    for (int64_t i = 0; i < n; ++i) parts.push_back(at::tensor({w.rank * 100.f + p * 10.f + i, 1.f * i}).unsqueeze(0));
  }
  at::Tensor send = parts.empty() ? at::empty({0, 2}) : at::cat(parts, 0);
  std::vector<int64_t> recv_counts = comm.exchange_counts(send_counts);
  at::Tensor got = comm.all_to_all(send, send_counts, recv_counts);
  int64_t row = 0;
  for (int p = 0; p < w.size; ++p) {
    ASSERT_EQ(recv_counts[static_cast<size_t>(p)], (p + w.rank) % 3);
    for (int64_t i = 0; i < recv_counts[static_cast<size_t>(p)]; ++i, ++row)
      EXPECT_EQ(got[row][0].item<float>(), p * 100.f + w.rank * 10.f + i);
  }
  EXPECT_EQ(row, got.size(0));
}

TEST(MpiCommunicator, Collectives) {
  World w;
  check_collectives(w, *w.comm);
}

TEST(MpiCommunicator, VariableAllToAllWithEmptyParts) {
  World w;
  check_variable_all_to_all(w, *w.comm);
}

// The communicator ranks sharing a GPU use, staged through host memory: here
// with CPU tensors, so that its staging and copying back run on this machine.
TEST(StagedCommunicator, CollectivesAndAllToAll) {
  World w;
  std::unique_ptr<Communicator> staged = make_staged_communicator(*w.comm, at::kCPU);
  EXPECT_EQ(staged->rank(), w.rank);
  EXPECT_EQ(staged->size(), w.size);
  check_collectives(w, *staged);
  check_variable_all_to_all(w, *staged);
}

// Every rank reads its own part; together they read every record once, numbered
// as in the file, and the token cap falls where it falls for one rank.
TEST(ShareCorpus, PartsCoverTheCorpusOnceWithFileNumbers) {
  World w;
  const std::string path = "/tmp/smoe-test-parallel-corpus-" + std::to_string(::getppid()) + ".jsonl";
  const int64_t records = 23;
  if (w.rank == 0) {
    std::ofstream out(path);
    for (int64_t i = 0; i < records; ++i) {
      if (i % 5 == 2) out << "\n";  // blank lines count as lines, not records
      out << "{\"input_ids\": [" << i;
      for (int64_t k = 0; k < i % 4; ++k) out << ", 7";
      out << "]}\n";
    }
  }
  ASSERT_EQ(MPI_Barrier(MPI_COMM_WORLD), MPI_SUCCESS);
  auto tok = make_tokenizer("byte");
  for (const int64_t cap : {int64_t{0}, int64_t{19}}) {
    const CorpusPart part = share_corpus(path, *tok, 300, cap, *w.comm);
    CorpusReader reader(path, *tok, 300, part);
    std::vector<int64_t> mine;  // (index, line, first token, length) per record
    Document d;
    while (reader.next(&d))
      mine.insert(mine.end(), {d.index, d.line, d.tokens[0], static_cast<int64_t>(d.tokens.size())});
    at::Tensor all = w.comm->gather_rows(at::tensor(mine, at::kLong).view({-1, 4}), 0);
    if (w.rank != 0) continue;
    int64_t line = 0, tokens = 0, i = 0;
    for (; i < all.size(0); ++i) {
      line += 1 + (i % 5 == 2);
      EXPECT_EQ(all[i][0].item<int64_t>(), i);
      EXPECT_EQ(all[i][1].item<int64_t>(), line);
      EXPECT_EQ(all[i][2].item<int64_t>(), i);
      const int64_t length = all[i][3].item<int64_t>();
      EXPECT_EQ(length, cap > 0 ? std::min(1 + i % 4, cap - tokens) : 1 + i % 4);
      tokens += length;
    }
    EXPECT_EQ(i, cap > 0 ? 8 : records);  // lengths 1, 2, 3, 4, 1, 2, 3, 4: the cap cuts record 7 to 3
    if (cap > 0) EXPECT_EQ(tokens, cap);
  }
  if (w.rank == 0) std::remove(path.c_str());
}

TEST(Placement, ContiguousBlocksWhenExpertsDoNotDivide) {
  ModelConfig c;
  c.num_layers = 2;
  c.layer_experts = {7, 0};
  ExpertPlacement p = ExpertPlacement::contiguous(c, 3);
  EXPECT_EQ(p.owners(0), (std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2}));
  EXPECT_TRUE(p.owners(1).empty());
  EXPECT_EQ(p.experts_of(0, 1), (std::vector<int64_t>{3, 4}));
}

TEST(Placement, FromFileAndItsFaults) {
  World w;
  ModelConfig c;
  c.num_layers = 2;
  c.layer_experts = {4, 4};
  const std::string path = testing::TempDir() + "smoe-placement-" + std::to_string(::getpid()) + "-" +
                           std::to_string(w.rank) + ".json";
  write_json_file(path, {{"default", {1, 0, 1, 0}}, {"layers", {{"1", {0, 0, 0, 1}}}}});
  ExpertPlacement p = ExpertPlacement::from_file(path, c, 2);
  EXPECT_EQ(p.owners(0), (std::vector<int64_t>{1, 0, 1, 0}));
  EXPECT_EQ(p.owners(1), (std::vector<int64_t>{0, 0, 0, 1}));
  write_json_file(path, {{"default", {0, 2, 0, 0}}});
  EXPECT_THROW(ExpertPlacement::from_file(path, c, 2), InputError);
  write_json_file(path, {{"layers", {{"5", {0, 0, 0, 0}}}}});
  EXPECT_THROW(ExpertPlacement::from_file(path, c, 2), InputError);
  write_json_file(path, {{"default", {0, 1}}});
  try {
    ExpertPlacement::from_file(path, c, 2);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("lists 2 owners for 4 experts"), std::string::npos) << e.what();
  }
}

MoeLayer random_layer(int64_t E, int64_t d, int64_t ff) {
  at::manual_seed(11);  // the same layer on every rank
  MoeLayer m;
  m.num_experts = E;
  m.router = at::randn({E, d});
  for (int64_t e = 0; e < E; ++e)
    m.experts.push_back({at::randn({ff, d}) * 0.3, at::randn({ff, d}) * 0.3, at::randn({d, ff}) * 0.3});
  return m;
}

TEST(ExpertParallelExecutor, EqualsLocalExecutionForEveryPlacement) {
  World w;
  const int64_t E = 7, d = 12, k = 2;
  MoeLayer full = random_layer(E, d, 20);
  ModelConfig c;
  c.num_layers = 1;
  c.layer_experts = {E};
  // Each rank its own tokens, a different number on each.
  at::manual_seed(100 + w.rank);
  at::Tensor x = at::randn({5 + 3 * w.rank, d});
  RouterConfig rc;
  rc.top_k = k;
  rc.norm_topk_prob = true;
  Routing r = route(rc, x, full.router, {});
  LocalMoeExecutor local;
  at::Tensor expect = local.run(full, x, r, nullptr);

  std::vector<ExpertPlacement> placements = {ExpertPlacement::contiguous(c, w.size)};
  {
    const std::string path = testing::TempDir() + "smoe-rr-" + std::to_string(::getpid()) + "-" + std::to_string(w.rank);
    std::vector<int64_t> rr;
    for (int64_t e = 0; e < E; ++e) rr.push_back((E - 1 - e) % w.size);
    write_json_file(path, {{"default", rr}});
    placements.push_back(ExpertPlacement::from_file(path, c, w.size));
  }
  for (const auto& placement : placements) {
    MoeLayer mine = full;
    for (int64_t e = 0; e < E; ++e)
      if (placement.owner(0, e) != w.rank) mine.experts[static_cast<size_t>(e)] = GatedMlp{};
    for (ExpertGemms gemms : {ExpertGemms::PerSource, ExpertGemms::Grouped}) {
      ExpertParallelExecutor ep(*w.comm, placement, 0.0, gemms);
      at::Tensor got = ep.run(mine, x, r, nullptr);
      EXPECT_LE((got - expect).abs().max().item<float>(), 1e-5f) << (gemms == ExpertGemms::Grouped ? "grouped" : "per source");
      EXPECT_EQ(ep.dropped_slots(), 0);
    }
  }
  // A rank with no tokens still takes part.
  MoeLayer mine = full;
  for (int64_t e = 0; e < E; ++e)
    if (placements[0].owner(0, e) != w.rank) mine.experts[static_cast<size_t>(e)] = GatedMlp{};
  ExpertParallelExecutor ep(*w.comm, placements[0]);
  at::Tensor empty = at::empty({0, d});
  Routing re = route(rc, empty, full.router, {});
  at::Tensor xs = w.rank == 0 ? empty : x;
  at::Tensor got = ep.run(mine, xs, w.rank == 0 ? re : r, nullptr);
  EXPECT_EQ(got.size(0), xs.size(0));
  if (w.rank != 0) {
    EXPECT_LE((got - expect).abs().max().item<float>(), 1e-5f);
  }
}

TEST(ExpertParallelExecutor, CapacityDropsTheLowestGates) {
  World w;
  const int64_t E = 4, d = 8, k = 2, T = 40;
  MoeLayer full = random_layer(E, d, 16);
  ModelConfig c;
  c.num_layers = 1;
  c.layer_experts = {E};
  at::manual_seed(200 + w.rank);
  at::Tensor x = at::randn({T, d});
  RouterConfig rc;
  rc.top_k = k;
  Routing r = route(rc, x, full.router, {});
  const double factor = 0.5;
  const int64_t capacity = static_cast<int64_t>(std::ceil(factor * T * k / E));  // 10 slots per expert

  // Reference: per expert keep the `capacity` slots with the highest gates, zero the rest.
  Routing kept = r;
  kept.weights = r.weights.clone();
  int64_t dropped = 0;
  for (int64_t e = 0; e < E; ++e) {
    at::Tensor slots = (r.experts.reshape({-1}) == e).nonzero().squeeze(1);
    if (slots.numel() <= capacity) continue;
    at::Tensor gates = r.weights.reshape({-1}).index_select(0, slots);
    at::Tensor low = std::get<1>(gates.sort(true, 0, true)).narrow(0, capacity, slots.numel() - capacity);
    kept.weights.view({-1}).index_fill_(0, slots.index_select(0, low), 0.0);
    dropped += slots.numel() - capacity;
  }
  LocalMoeExecutor local;
  at::Tensor expect = local.run(full, x, kept, nullptr);

  MoeLayer mine = full;
  ExpertPlacement placement = ExpertPlacement::contiguous(c, w.size);
  for (int64_t e = 0; e < E; ++e)
    if (placement.owner(0, e) != w.rank) mine.experts[static_cast<size_t>(e)] = GatedMlp{};
  ExpertParallelExecutor ep(*w.comm, placement, factor);
  at::Tensor got = ep.run(mine, x, r, nullptr);
  EXPECT_GT(dropped, 0);
  EXPECT_EQ(ep.dropped_slots(), dropped);
  EXPECT_EQ(ep.routed_slots(), T * k);
  EXPECT_LE((got - expect).abs().max().item<float>(), 1e-5f);
}

TEST(Decoder, EachRankHoldsOnlyItsExperts) {
  World w;
  const std::string dir = testing::TempDir() + "smoe-dist-model-" + std::to_string(::getpid()) + "-" + std::to_string(w.rank);
  testing_util::write_tiny_mixtral(dir);
  Checkpoint ck(dir);
  ExpertPlacement placement = ExpertPlacement::contiguous(ck.config(), w.size);
  Decoder all(ck, {at::kFloat, at::kCPU, {}});
  Decoder mine(ck, {at::kFloat, at::kCPU, [&](int64_t l, int64_t e) { return placement.owner(l, e) == w.rank; }});
  const uint64_t expert_bytes = 3 * 48 * 32 * 4;  // three [48, 32] float matrices
  const int64_t E = 4, layers = 2;
  uint64_t held = 0;
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t e = 0; e < E; ++e) {
      const bool owned = placement.owner(l, e) == w.rank;
      EXPECT_EQ(mine.moe_layer(l)->experts[static_cast<size_t>(e)].defined(), owned) << "layer " << l << " expert " << e;
      held += owned ? expert_bytes : 0;
    }
  }
  const uint64_t replicated = all.parameter_bytes() - layers * E * expert_bytes;
  EXPECT_EQ(mine.parameter_bytes(), replicated + held);
  at::Tensor total = at::tensor({static_cast<int64_t>(held)}, at::kLong);
  w.comm->all_reduce_sum(total);
  EXPECT_EQ(total.item<int64_t>(), static_cast<int64_t>(layers * E * expert_bytes));
}

}  // namespace
}  // namespace smoe
