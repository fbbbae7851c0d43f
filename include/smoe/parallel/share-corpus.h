// Each rank's part of a corpus: the parts of text/corpus.h agreed over the ranks.
#pragma once

#include <cstdint>
#include <string>

#include "smoe/parallel/comm.h"
#include "smoe/text/corpus.h"

namespace smoe {

// This rank's part of a corpus, over `host`: the token cap found by rank 0, the
// capped extent split into ranks' parts, and their numbering from every rank's
// counts. InputError on every rank when the corpus holds no records.
CorpusPart share_corpus(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size, int64_t max_tokens,
                        Communicator& host);

}  // namespace smoe
