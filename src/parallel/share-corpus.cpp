#include "smoe/parallel/share-corpus.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <tuple>

#include "smoe/core/error.h"

namespace smoe {

CorpusPart share_corpus(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size, int64_t max_tokens,
                        Communicator& host) {
  const int rank = host.rank(), ranks = host.size();
  CorpusPart part;
  if (max_tokens > 0) {
    at::Tensor cap = at::zeros({3}, at::kLong);
    if (rank == 0) {
      part = corpus_cap(path, tokenizer, vocab_size, max_tokens);
      cap = at::tensor({static_cast<int64_t>(part.end), static_cast<int64_t>(part.cut_at), part.cut_keep}, at::kLong);
    }
    host.broadcast(cap, 0);
    part.end = static_cast<uint64_t>(cap[0].item<int64_t>());
    part.cut_at = static_cast<uint64_t>(cap[1].item<int64_t>());
    part.cut_keep = cap[2].item<int64_t>();
  }
  const uint64_t extent = std::min(part.end, corpus_extent(path));
  std::tie(part.begin, part.end) = corpus_range(path, extent, rank, ranks);
  const RecordCount mine = count_records(path, part.begin, part.end);
  at::Tensor counts = host.all_gather(at::tensor({mine.newlines, mine.records}, at::kLong));  // [ranks, 2]
  for (int r = 0; r < rank; ++r) {
    part.first_line += counts[r][0].item<int64_t>();
    part.first_record += counts[r][1].item<int64_t>();
  }
  SMOE_CHECK_INPUT(counts.select(1, 1).sum().item<int64_t>() > 0, path, ": corpus holds no records");
  return part;
}

}  // namespace smoe
