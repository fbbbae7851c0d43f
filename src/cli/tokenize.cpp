// smoe tokenize: text corpora to token ids (or back).
#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/options.h"
#include "smoe/data/tokenize.h"

namespace smoe {

int run_tokenize(int argc, char** argv) {
  TokenizeOptions o;
  std::string format;
  bool no_special = false;
  po::options_description opts("smoe tokenize options");
  opts.add_options()("tokenizer", po::value<std::string>(&o.tokenizer)->required(),
                     "a tokenizer.json, a tiktoken.model, a SentencePiece .model, or byte")(
      "corpus", po::value<std::string>(&o.corpus)->required(), "JSONL: {\"text\": ...} per line")(
      "out", po::value<std::string>(&o.out)->required(),
      "JSONL {\"input_ids\": [...]} per record, or with --format megatron a folder of tokens.bin and tokens.idx")(
      "format", po::value<std::string>(&format)->default_value(choice_name(TokenizeOptions::format_names(), o.format)),
      "jsonl, or megatron (Megatron-LM's indexed dataset)")(
      "no-special-tokens", po::bool_switch(&no_special),
      "ids as encode(text, add_special_tokens=False): no BOS/EOS from the post-processor")(
      "decode", po::bool_switch(&o.decode), "the other way: {\"input_ids\"} records to {\"text\"}")(
      "skip-special-tokens", po::bool_switch(&o.skip_special_tokens), "with --decode: leave special tokens out")(
      "threads", po::value(&o.threads)->default_value(o.threads), "threads per rank (0: every core this process may use)")(
      "progress", po::value(&o.progress_seconds)->default_value(o.progress_seconds), "seconds between progress lines")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"tokenize", "--tokenizer FILE --corpus IN.jsonl --out OUT [options]",
                                      "Tokenizes every {\"text\": ...} record of a corpus, in order, exactly as the "
                                      "reference library does. MPI ranks each read their own byte range; threads "
                                      "share a rank's lines; memory does not grow with the corpus."},
                         opts, vm))
    return 0;
  o.format = parse_choice(TokenizeOptions::format_names(), "--format", format);
  o.add_special_tokens = !no_special;
  SMOE_CHECK_INPUT(o.threads >= 0, "--threads must not be negative");
  SMOE_CHECK_INPUT(o.progress_seconds > 0, "--progress must be positive");
  SMOE_CHECK_INPUT(!o.skip_special_tokens || o.decode, "--skip-special-tokens goes with --decode");
  JobContext context(job_setup("tokenize", argc, argv, vm));
  tokenize_corpus(o, context);
  return 0;
}

}  // namespace smoe
