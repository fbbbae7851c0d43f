// libFuzzer target: smoe's one JSON entry point (parse_json) on arbitrary bytes,
// whole and line by line as the corpus and eval readers call it. Every input must
// either parse or end in InputError; what parses must equal nlohmann's own parse
// of the same text, and what nlohmann parses within the depth limit and without a
// repeated key must parse. Every integer read through json_to_int fits int64.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "smoe/core/error.h"
#include "smoe/io/json.h"

namespace {

// Depth of a document (the fuzzer's inputs are short, so recursion is bounded),
// and whether an object repeats a key (nlohmann keeps the last; the raw text
// is rescanned by parsing each object's keys with the SAX interface below).
int depth(const nlohmann::json& j) {
  int d = 0;
  if (j.is_structured())
    for (const auto& v : j) d = std::max(d, depth(v));
  return j.is_structured() ? d + 1 : 0;
}

struct DuplicateFinder : nlohmann::json_sax<nlohmann::json> {
  std::vector<std::set<std::string>> keys;
  bool duplicate = false;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    duplicate = duplicate || !keys.back().insert(k).second;
    return true;
  }
  bool end_object() override {
    keys.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
};

void read_ints(const nlohmann::json& j) {
  if (j.is_structured()) {
    for (const auto& v : j) read_ints(v);
  } else if (j.is_number_integer()) {
    try {
      const int64_t v = smoe::json_to_int(j, "fuzz", "a number");
      if (j.is_number_unsigned() && static_cast<uint64_t>(v) != j.get<uint64_t>()) std::abort();
    } catch (const smoe::InputError&) {
      if (!j.is_number_unsigned() || j.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) std::abort();
    }
  }
}

void one(const std::string& text) {
  nlohmann::json ours;
  bool parsed = true;
  try {
    ours = smoe::parse_json(text, "fuzz");
  } catch (const smoe::InputError&) {
    parsed = false;
  }
  const nlohmann::json theirs = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed) {
    if (theirs.is_discarded() || ours != theirs || depth(ours) > smoe::kMaxJsonDepth) std::abort();
    read_ints(ours);
    return;
  }
  if (theirs.is_discarded() || depth(theirs) > smoe::kMaxJsonDepth) return;
  DuplicateFinder dup;
  nlohmann::json::sax_parse(text, &dup);
  if (!dup.duplicate) std::abort();  // refused a document nlohmann takes, within the limits
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  one(text);
  for (size_t begin = 0; begin < text.size();) {  // as a JSONL file: one record per line
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    one(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return 0;
}
