#include "smoe/eval/synth.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "smoe/core/error.h"
#include "smoe/io/json.h"

namespace smoe {

namespace {

// One example: the prompt and its answer; the text is prompt + answer + "\n".
struct Example {
  std::string prompt, answer;
};

using Rng = std::mt19937_64;

int64_t uniform(Rng& rng, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

std::string letters(Rng& rng, int64_t n, const std::string& alphabet = "abcdefghij") {
  std::string s;
  for (int64_t i = 0; i < n; ++i) s += alphabet[static_cast<size_t>(uniform(rng, 0, static_cast<int64_t>(alphabet.size()) - 1))];
  return s;
}

Example arith(Rng& rng) {
  const int64_t a = uniform(rng, 0, 999), b = uniform(rng, 0, 999);
  return {std::to_string(a) + "+" + std::to_string(b) + "=", std::to_string(a + b)};
}

Example reverse(Rng& rng) {
  std::string s = letters(rng, uniform(rng, 3, 8));
  std::string r(s.rbegin(), s.rend());
  return {"rev " + s + ">", r};
}

Example sort_digits(Rng& rng) {
  std::string s;
  for (int64_t i = uniform(rng, 3, 8); i > 0; --i) s += static_cast<char>('0' + uniform(rng, 0, 9));
  std::string t = s;
  std::sort(t.begin(), t.end());
  return {"sort " + s + ">", t};
}

Example count(Rng& rng) {
  std::string s = letters(rng, uniform(rng, 4, 12), "abc");
  const char c = "abc"[uniform(rng, 0, 2)];
  return {"count " + std::string(1, c) + " in " + s + ">", std::to_string(std::count(s.begin(), s.end(), c))};
}

Example grammar(Rng& rng) {
  static const std::vector<std::string> nouns = {"cat", "dog", "bird", "fox", "owl", "frog"};
  static const std::vector<std::string> verbs = {"see", "chase", "like", "find"};
  const bool plural = uniform(rng, 0, 1) == 1;
  const std::string subject = nouns[static_cast<size_t>(uniform(rng, 0, 5))] + (plural ? "s" : "");
  const std::string verb = verbs[static_cast<size_t>(uniform(rng, 0, 3))] + (plural ? "" : "s");
  const std::string object = nouns[static_cast<size_t>(uniform(rng, 0, 5))];
  return {"the " + subject + " ", verb + " the " + object + "."};
}

Example lookup(Rng& rng) {
  std::string prompt;
  std::vector<std::pair<char, int64_t>> pairs;
  for (int64_t i = 0; i < 4; ++i) {
    char key = static_cast<char>('p' + i);
    pairs.emplace_back(key, uniform(rng, 0, 9));
  }
  std::shuffle(pairs.begin(), pairs.end(), rng);
  for (const auto& [k, v] : pairs) prompt += std::string(1, k) + "=" + std::to_string(v) + " ";
  const auto& q = pairs[static_cast<size_t>(uniform(rng, 0, 3))];
  return {prompt + "? " + std::string(1, q.first) + ">", std::to_string(q.second)};
}

using Generator = std::function<Example(Rng&)>;

const std::vector<std::pair<std::string, Generator>>& tasks() {
  static const std::vector<std::pair<std::string, Generator>> t = {
      {"arith", arith}, {"reverse", reverse}, {"sort", sort_digits},
      {"count", count}, {"grammar", grammar}, {"lookup", lookup}};
  return t;
}

}  // namespace

const std::vector<std::string>& synth_task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& t : tasks()) n.push_back(t.first);
    return n;
  }();
  return names;
}

void write_synth_suite(const std::string& dir, const SynthOptions& o) {
  SMOE_CHECK_INPUT(o.train >= 1 && o.eval >= 1, "synthetic suite sizes must be positive");
  for (size_t t = 0; t < tasks().size(); ++t) {
    const auto& [name, make] = tasks()[t];
    Rng rng(o.seed * 1000003ull + t);
    const std::string folder = dir + "/" + name;
    std::filesystem::create_directories(folder);
    std::string train;
    for (int64_t i = 0; i < o.train; ++i) {
      Example e = make(rng);
      train += nlohmann::json({{"text", e.prompt + e.answer + "\n"}}).dump() + "\n";
    }
    write_file_atomic(folder + "/train.jsonl", train);
    std::string eval;
    for (int64_t i = 0; i < o.eval; ++i) {
      Example e = make(rng);
      eval += nlohmann::json({{"text", e.prompt + e.answer + "\n"}}).dump() + "\n";
      // Multiple choice: the answer among three distractors from other examples.
      std::vector<std::string> choices = {e.answer};
      while (choices.size() < 4) {
        std::string other = make(rng).answer;
        if (std::find(choices.begin(), choices.end(), other) == choices.end()) choices.push_back(other);
      }
      std::shuffle(choices.begin(), choices.end(), rng);
      const auto label = std::find(choices.begin(), choices.end(), e.answer) - choices.begin();
      Example m = e;
      eval += nlohmann::json({{"context", m.prompt}, {"choices", choices}, {"label", label}}).dump() + "\n";
      Example q = make(rng);
      eval += nlohmann::json({{"prompt", q.prompt}, {"answer", q.answer}}).dump() + "\n";
    }
    write_file_atomic(folder + "/eval.jsonl", eval);
  }
}

}  // namespace smoe
