#include "smoe/eval/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/output.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"

namespace smoe {

namespace {

using Rng = std::mt19937_64;

// A task: its own characters (keys, values and the separator between them), so
// that its tokens are its own and routing can tell the tasks apart.
struct TaskSpec {
  const char* name;
  const char* alphabet;
  char separator;
};

const TaskSpec kTasks[] = {{"capitals", "abcdefghijklm", '='},
                           {"elements", "ABCDEFGHIJKLM", ':'},
                           {"years", "0123456789", ';'},
                           {"symbols", "!#$%&()*+-/<@", '?'}};
constexpr int64_t kKeyLength = 3, kValueLength = 3;

std::string word(Rng& rng, const std::string& alphabet, int64_t n) {
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::string s;
  for (int64_t i = 0; i < n; ++i) s += alphabet[pick(rng)];
  return s;
}

struct Fact {
  std::string key, value;
};

// The task's facts: distinct keys, each with a value drawn at random, in random order.
std::vector<Fact> facts_of(const TaskSpec& t, int64_t n, Rng& rng) {
  std::vector<Fact> facts;
  std::set<std::string> keys;
  while (static_cast<int64_t>(facts.size()) < n) {
    std::string key = word(rng, t.alphabet, kKeyLength);
    if (keys.insert(key).second) facts.push_back({key, word(rng, t.alphabet, kValueLength)});
  }
  return facts;
}

}  // namespace

const std::vector<std::string>& synth_task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& t : kTasks) n.push_back(t.name);
    return n;
  }();
  return names;
}

void write_synth_suite(const std::string& dir, const SynthOptions& o) {
  SMOE_CHECK_INPUT(o.train >= 1 && o.eval >= 1 && o.facts >= 4, "synthetic suite sizes must be positive, with at "
                   "least 4 facts per task");
  SMOE_CHECK_INPUT(o.eval <= o.facts, "--eval ", o.eval, " is more than the ", o.facts,
                   " facts per task (each eval example asks a different fact)");
  for (const TaskSpec& spec : kTasks) {  // checked for every task before anything is written
    const int64_t keys = static_cast<int64_t>(std::pow(std::strlen(spec.alphabet), kKeyLength));
    SMOE_CHECK_INPUT(o.facts <= keys / 2, "--facts ", o.facts, " is more than half the ", keys, " keys of task ",
                     spec.name);
  }
  for (size_t t = 0; t < std::size(kTasks); ++t) {
    const TaskSpec& spec = kTasks[t];
    Rng rng(o.seed * 1000003ull + t);
    const std::vector<Fact> facts = facts_of(spec, o.facts, rng);
    auto line = [&](const Fact& f) { return f.key + spec.separator + f.value + "\n"; };
    const std::string folder = dir + "/" + spec.name;
    std::filesystem::create_directories(folder);
    // Training text: facts drawn uniformly, one per line.
    std::uniform_int_distribution<size_t> any(0, facts.size() - 1);
    std::string train;
    for (int64_t i = 0; i < o.train; ++i)
      train += nlohmann::json({{"text", line(facts[any(rng)])}}).dump() + "\n";
    write_file(folder + "/train.jsonl", train);
    // A corpus for measuring speed (smoe score): documents of 16 facts each.
    std::string score;
    for (int64_t d = 0; d < 64; ++d) {
      std::string text;
      for (int64_t i = 0; i < 16; ++i) text += line(facts[any(rng)]);
      score += nlohmann::json({{"text", text}}).dump() + "\n";
    }
    write_file(folder + "/score.jsonl", score);
    // Eval: the first `eval` facts (distinct), each asked three ways: its line as
    // text (perplexity), its value among three other values of the task
    // (multiple choice), and its value generated after the key (exact match).
    std::string eval;
    for (int64_t i = 0; i < o.eval; ++i) {
      const Fact& f = facts[static_cast<size_t>(i)];
      const std::string prompt = f.key + spec.separator;
      eval += nlohmann::json({{"text", line(f)}}).dump() + "\n";
      std::vector<std::string> choices = {f.value};
      while (choices.size() < 4) {
        const std::string& other = facts[any(rng)].value;
        if (std::find(choices.begin(), choices.end(), other) == choices.end()) choices.push_back(other);
      }
      std::shuffle(choices.begin(), choices.end(), rng);
      const auto label = std::find(choices.begin(), choices.end(), f.value) - choices.begin();
      eval += nlohmann::json({{"context", prompt}, {"choices", choices}, {"label", label}}).dump() + "\n";
      eval += nlohmann::json({{"prompt", prompt}, {"answer", f.value}}).dump() + "\n";
    }
    write_file(folder + "/eval.jsonl", eval);
  }
}

void synth_suite(const SynthOptions& o) {
  for (int64_t n : {o.facts, o.train, o.eval})
    SMOE_CHECK_INPUT(n >= 1 && n <= 10000000, "--facts, --train and --eval must lie in [1, 1e7], found ", n);
  OutputSpec spec = folder_output(o.out, "data");
  spec.overwrite = o.overwrite;
  spec.inputs = o.inputs;
  AtomicOutput output(spec);
  write_synth_suite(output.temp(), o);
  output.commit();
  log_info("data: wrote the synthetic suite to " + output.path());
}

}  // namespace smoe
