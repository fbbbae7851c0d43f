#include "smoe/eval/evaluator.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/io/json.h"
#include "smoe/parallel/comm.h"
#include "smoe/text/tokenizer.h"
#include "smoe/text/unicode.h"
#include "smoe/model/decoder.h"

namespace smoe {

namespace {

// `text` encoded (with or without the tokenizer's special tokens); a fault names `where`.
std::vector<int64_t> encode_at(const Tokenizer& tok, const std::string& text, const std::string& where,
                               bool special = false) {
  try {
    return tok.encode(text, special);
  } catch (const InputError& e) {
    throw InputError(str(where, ": ", e.what()));
  }
}

// Token ids of a field: a string is encoded without special tokens; a list is ids.
std::vector<int64_t> ids_of(const nlohmann::json& v, const Tokenizer& tok, const std::string& where, uint64_t* bytes) {
  if (v.is_string()) {
    if (bytes) *bytes = v.get_ref<const std::string&>().size();
    return encode_at(tok, v.get<std::string>(), where);
  }
  SMOE_CHECK_INPUT(v.is_array(), where, ": expected text or a list of token ids");
  std::vector<int64_t> ids;
  for (const auto& x : v) ids.push_back(json_to_int(x, where, "a token id"));
  if (bytes) *bytes = 0;
  return ids;
}

// lm-evaluation-harness's default (add_bos_token=False): no BOS before a context
// or prompt; an empty one becomes the prefix token (the tokenizer's BOS).
std::vector<int64_t> with_prefix(const Tokenizer& tok, std::vector<int64_t> ids) {
  return ids.empty() ? tok.prefix_ids() : ids;
}

// Bytes of the whitespace at the end of `s`, by Python's str.isspace (what rstrip() removes).
size_t trailing_space_bytes(const std::string& s) {
  size_t n = s.size();
  while (n > 0) {
    const size_t k = utf8_char_start(s, n);
    size_t len = 0;
    if (!is_python_space(utf8_at(s, k, &len))) break;
    n = k;
  }
  return s.size() - n;
}

// Context and continuation as lm-evaluation-harness splits them: trailing spaces
// of the context move to the continuation; the whole is encoded and cut after
// as many tokens as the context alone has.
std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_pair(const Tokenizer& tok, std::string context,
                                                                  std::string continuation, const std::string& where) {
  const size_t spaces = trailing_space_bytes(context);
  if (spaces > 0) {
    continuation = context.substr(context.size() - spaces) + continuation;
    context.resize(context.size() - spaces);
  }
  const std::vector<int64_t> whole = encode_at(tok, context + continuation, where);
  const std::vector<int64_t> ctx = encode_at(tok, context, where);
  const size_t cut = std::min(ctx.size(), whole.size());
  return {std::vector<int64_t>(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut)),
          std::vector<int64_t>(whole.begin() + static_cast<std::ptrdiff_t>(cut), whole.end())};
}

}  // namespace

std::vector<EvalRecord> read_eval_records(const std::string& path, const Tokenizer& tok, int64_t vocab,
                                          int64_t context, int rank, int ranks) {
  check_input_file(path, "eval file");
  std::ifstream in(path);
  SMOE_CHECK_INPUT(in.good(), path, ": cannot open eval file: ", errno_text());
  std::vector<EvalRecord> out;
  std::string text;
  int64_t line = 0, records = 0;
  while (std::getline(in, text)) {
    ++line;
    SMOE_CHECK_INPUT(text.size() <= kMaxJsonBytes, path, ":", line, ": a record of ", text.size(),
                     " bytes, beyond the limit of ", kMaxJsonBytes);
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (records++ % ranks != rank) continue;
    const std::string where = path + ":" + std::to_string(line);
    const nlohmann::json j = parse_json(text, where);
    SMOE_CHECK_INPUT(j.is_object(), where, ": a record must be a JSON object");
    EvalRecord r;
    r.line = line;
    r.index = records - 1;
    if (j.contains("choices")) {
      r.kind = EvalRecord::MultipleChoice;
      SMOE_CHECK_INPUT(j.contains("context") && j["choices"].is_array() && j["choices"].size() >= 2 &&
                           j.contains("label") && j["label"].is_number_integer(),
                       where, ": a multiple-choice record needs 'context', two or more 'choices' and an integer 'label'");
      for (const auto& c : j["choices"]) {
        uint64_t bytes = 0;
        if (j["context"].is_string() && c.is_string()) {
          auto [ctx, cont] = encode_pair(tok, j["context"].get<std::string>(), c.get<std::string>(), where);
          r.context = with_prefix(tok, std::move(ctx));
          r.choices.push_back(std::move(cont));
          bytes = c.get_ref<const std::string&>().size();
        } else {
          r.context = ids_of(j["context"], tok, where, nullptr);
          r.choices.push_back(ids_of(c, tok, where, &bytes));
        }
        SMOE_CHECK_INPUT(!r.choices.back().empty(), where, ": a choice is empty");
        SMOE_CHECK_INPUT(static_cast<int64_t>(r.choices.back().size()) < context, where, ": a choice of ",
                         r.choices.back().size(), " tokens leaves no room for its context within --context ", context);
        r.choice_bytes.push_back(bytes ? bytes : r.choices.back().size());
      }
      r.label = json_to_int(j["label"], where, "'label'");
      SMOE_CHECK_INPUT(r.label >= 0 && r.label < static_cast<int64_t>(r.choices.size()), where, ": label ", r.label,
                       " is not the index of a choice");
      SMOE_CHECK_INPUT(!r.context.empty(), where, ": the context is empty");
    } else if (j.contains("prompt")) {
      r.kind = EvalRecord::Generate;
      SMOE_CHECK_INPUT(j.contains("answer") && j["answer"].is_string(), where, ": a prompt record needs an 'answer' string");
      r.prompt = ids_of(j["prompt"], tok, where, nullptr);
      if (j["prompt"].is_string()) r.prompt = with_prefix(tok, std::move(r.prompt));
      r.answer_text = j["answer"].get<std::string>();
      SMOE_CHECK_INPUT(r.answer_text.find('\n') == std::string::npos, where, ": the answer holds a newline");
      r.answer = encode_at(tok, r.answer_text + "\n", where);
      SMOE_CHECK_INPUT(!r.prompt.empty(), where, ": the prompt is empty");
      SMOE_CHECK_INPUT(static_cast<int64_t>(r.answer.size()) <= context, where, ": an answer of ", r.answer.size(),
                       " tokens leaves no room for its prompt within --context ", context);
    } else if (j.contains("text") || j.contains("input_ids")) {
      r.kind = EvalRecord::Text;
      if (j.contains("text")) {
        SMOE_CHECK_INPUT(j["text"].is_string(), where, ": 'text' must be a string");
        r.tokens = encode_at(tok, j["text"].get<std::string>(), where, true);
        r.text_bytes = j["text"].get_ref<const std::string&>().size();
      } else {
        r.tokens = ids_of(j["input_ids"], tok, where, &r.text_bytes);
      }
    } else {
      throw InputError(str(where, ": record has none of 'text', 'input_ids', 'choices', 'prompt'"));
    }
    for (const auto* v : {&r.tokens, &r.context, &r.prompt, &r.answer})
      for (int64_t id : *v)
        SMOE_CHECK_INPUT(id >= 0 && id < vocab, where, ": token id ", id, " is outside the model's vocabulary [0, ",
                         vocab, ")");
    for (const auto& c : r.choices)
      for (int64_t id : c)
        SMOE_CHECK_INPUT(id >= 0 && id < vocab, where, ": token id ", id, " is outside the model's vocabulary");
    out.push_back(std::move(r));
  }
  SMOE_CHECK_INPUT(records > 0, path, ": eval file holds no records");
  return out;
}

namespace {

// Scores records one at a time; every forward call is counted, so that ranks
// can agree on how many each makes (the exchanges need every rank in each).
class RecordScorer {
 public:
  RecordScorer(const Decoder& decoder, MoeExecutor& executor, const Tokenizer& tokenizer, int64_t context)
      : decoder_(decoder), executor_(executor), tokenizer_(tokenizer), context_(context) {}

  // Fills row [kind, line, scores...] of the record (see evaluate()), and for a
  // prompt the tokens it generated.
  void score(const EvalRecord& r, double* row, std::vector<int64_t>* generated);
  // A forward call on an empty batch: one more call, no tokens.
  void idle() { decoder_.hidden_states(at::empty({0, 2}, at::kLong), executor_); }

 private:
  // The log-probabilities [n, V] (float32, on the CPU) of the `n` tokens that end
  // row b of hidden states h [B, S, d], each predicted from the position before it.
  at::Tensor logprobs(const at::Tensor& h, int64_t b, int64_t end, int64_t n) const {
    return at::log_softmax(decoder_.head(h[b].narrow(0, end - n - 1, n)), -1).cpu();
  }
  void text(const EvalRecord& r, double* row);
  void choice(const EvalRecord& r, double* row);
  void generate(const EvalRecord& r, double* row, std::vector<int64_t>* generated);

  const Decoder& decoder_;
  MoeExecutor& executor_;
  const Tokenizer& tokenizer_;
  int64_t context_;
};

// Sequences as one batch [B, longest], shorter ones padded at the end (causal
// attention: padding after a sequence does not change it).
at::Tensor padded_batch(const std::vector<std::vector<int64_t>>& seqs) {
  size_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.size());
  at::Tensor t = at::zeros({static_cast<int64_t>(seqs.size()), static_cast<int64_t>(longest)}, at::kLong);
  for (size_t b = 0; b < seqs.size(); ++b)
    std::copy(seqs[b].begin(), seqs[b].end(), t.data_ptr<int64_t>() + b * longest);
  return t;
}

void RecordScorer::score(const EvalRecord& r, double* row, std::vector<int64_t>* generated) {
  row[1] = static_cast<double>(r.line);
  if (r.kind == EvalRecord::Text) text(r, row);
  else if (r.kind == EvalRecord::MultipleChoice) choice(r, row);
  else generate(r, row, generated);
}

// Perplexity: the text in pieces of `context` tokens.
void RecordScorer::text(const EvalRecord& r, double* row) {
  double nll = 0;
  int64_t predicted = 0;
  const auto step = static_cast<size_t>(context_);
  for (size_t b = 0; b < r.tokens.size(); b += step) {
    std::vector<int64_t> piece(r.tokens.begin() + static_cast<std::ptrdiff_t>(b),
                               r.tokens.begin() + static_cast<std::ptrdiff_t>(std::min(r.tokens.size(), b + step)));
    if (piece.size() < 2) {
      idle();  // keeps the call count
      continue;
    }
    const auto n = static_cast<int64_t>(piece.size());
    at::Tensor lp = logprobs(decoder_.hidden_states(padded_batch({piece}), executor_), 0, n, n - 1);
    auto a = lp.accessor<float, 2>();
    for (int64_t k = 1; k < n; ++k) nll -= a[k - 1][piece[static_cast<size_t>(k)]];
    predicted += n - 1;
  }
  row[0] = 1;
  row[2] = nll;
  row[3] = static_cast<double>(predicted);
  row[4] = static_cast<double>(r.text_bytes);
}

// Multiple choice: the most likely continuation, by log-likelihood and by it per
// byte. Every choice (after its context, the last `context` tokens of the two)
// runs in one batch.
void RecordScorer::choice(const EvalRecord& r, double* row) {
  std::vector<std::vector<int64_t>> seqs;
  for (const auto& c : r.choices) {
    std::vector<int64_t> seq = r.context;
    seq.insert(seq.end(), c.begin(), c.end());
    if (static_cast<int64_t>(seq.size()) > context_) seq.erase(seq.begin(), seq.end() - context_);
    seqs.push_back(std::move(seq));
  }
  const at::Tensor h = decoder_.hidden_states(padded_batch(seqs), executor_);
  double best = -1e300, best_norm = -1e300;
  int64_t pick = 0, pick_norm = 0;
  for (size_t c = 0; c < r.choices.size(); ++c) {
    const auto n = static_cast<int64_t>(r.choices[c].size());
    at::Tensor lp = logprobs(h, static_cast<int64_t>(c), static_cast<int64_t>(seqs[c].size()), n);
    auto a = lp.accessor<float, 2>();
    double ll = 0;
    for (int64_t k = 0; k < n; ++k) ll += a[k][r.choices[c][static_cast<size_t>(k)]];
    const double norm = ll / static_cast<double>(r.choice_bytes[c]);
    if (ll > best) {
      best = ll;
      pick = static_cast<int64_t>(c);
    }
    if (norm > best_norm) {
      best_norm = norm;
      pick_norm = static_cast<int64_t>(c);
    }
  }
  row[0] = 2;
  row[2] = pick == r.label ? 1 : 0;
  row[3] = pick_norm == r.label ? 1 : 0;
}

// Greedy generation, as many tokens as answer + "\n" has, one forward call each:
// the prompt (its last tokens, leaving the answer room within `context`), then
// each new token alone, the earlier ones' keys and values kept in a cache. A
// match when the decoded text is the answer, then a newline.
void RecordScorer::generate(const EvalRecord& r, double* row, std::vector<int64_t>* generated) {
  const size_t room = static_cast<size_t>(context_) + 1 - r.answer.size();
  std::vector<int64_t> next(r.prompt.end() - static_cast<std::ptrdiff_t>(std::min(room, r.prompt.size())),
                            r.prompt.end());
  DecoderCache cache;
  for (size_t k = 0; k < r.answer.size(); ++k) {
    const at::Tensor h = decoder_.hidden_states(padded_batch({next}), executor_, nullptr, &cache);
    const int64_t id = decoder_.head(h[0].narrow(0, h.size(1) - 1, 1)).argmax().item<int64_t>();
    generated->push_back(id);
    next = {id};
  }
  const std::string text = tokenizer_.decode(*generated, true);
  row[0] = 3;
  row[2] = text.compare(0, r.answer_text.size() + 1, r.answer_text + "\n") == 0 ? 1 : 0;
}

// The forward calls the records take.
int64_t forward_calls(const std::vector<EvalRecord>& records, int64_t context) {
  int64_t calls = 0;
  for (const auto& r : records) {
    if (r.kind == EvalRecord::Text)
      calls += (static_cast<int64_t>(r.tokens.size()) + context - 1) / context;
    else if (r.kind == EvalRecord::MultipleChoice)
      calls += 1;
    else
      calls += static_cast<int64_t>(r.answer.size());
  }
  return calls;
}

// The gathered table's rows, column by column, by kind; `generated` [records,
// longest answer] holds each prompt's tokens plus one (0: none).
TaskSamples samples_of(const at::Tensor& table, const at::Tensor& generated) {
  auto row = table.accessor<double, 2>();
  auto gen = generated.accessor<int64_t, 2>();
  TaskSamples s;
  for (int64_t i = 0; i < table.size(0); ++i) {
    const int kind = static_cast<int>(row[i][0]);
    const auto line = static_cast<int64_t>(row[i][1]);
    if (kind == 1) {
      s.text_line.push_back(line);
      s.nll.push_back(row[i][2]);
      s.tokens.push_back(row[i][3]);
      s.bytes.push_back(row[i][4]);
    } else if (kind == 2) {
      s.choice_line.push_back(line);
      s.acc.push_back(row[i][2]);
      s.acc_norm.push_back(row[i][3]);
    } else if (kind == 3) {
      s.generate_line.push_back(line);
      s.exact_match.push_back(row[i][2]);
      s.generated.emplace_back();
      for (int64_t k = 0; k < generated.size(1) && gen[i][k] > 0; ++k) s.generated.back().push_back(gen[i][k] - 1);
    }
  }
  return s;
}

}  // namespace

TaskSamples evaluate(const Decoder& decoder, MoeExecutor& executor, Communicator& host, const Tokenizer& tokenizer,
                     const std::vector<EvalRecord>& records, int64_t context) {
  c10::NoGradGuard no_grad;
  // Every rank makes the same number of forward calls: count ours, agree on the most;
  // and every rank learns how many records the file holds.
  const int64_t calls = forward_calls(records, context);
  int64_t total = 0;
  for (const auto& r : records) total = std::max(total, r.index + 1);
  at::Tensor most = at::tensor({calls, total}, at::kLong);
  host.all_reduce_max(most);

  // One row per record of the file: kind (1 text, 2 multiple choice, 3 prompt),
  // line, then the scores (text: nll, tokens, bytes; choice: acc, acc_norm;
  // prompt: exact match); and a row of generated tokens. Each rank fills its
  // rows; a sum gathers them.
  int64_t longest_answer = 0;
  for (const auto& r : records) longest_answer = std::max(longest_answer, static_cast<int64_t>(r.answer.size()));
  at::Tensor width = at::tensor({longest_answer}, at::kLong);
  host.all_reduce_max(width);
  at::Tensor table = at::zeros({most[1].item<int64_t>(), 5}, at::kDouble);
  at::Tensor generated = at::zeros({most[1].item<int64_t>(), width.item<int64_t>()}, at::kLong);
  RecordScorer scorer(decoder, executor, tokenizer, context);
  for (const auto& r : records) {
    std::vector<int64_t> ids;
    scorer.score(r, table.data_ptr<double>() + r.index * 5, &ids);
    for (size_t k = 0; k < ids.size(); ++k) generated[r.index][static_cast<int64_t>(k)] = ids[k] + 1;
  }
  for (int64_t i = calls; i < most[0].item<int64_t>(); ++i) scorer.idle();
  host.all_reduce_sum(table);
  host.all_reduce_sum(generated);
  return samples_of(table, generated);
}

}  // namespace smoe
