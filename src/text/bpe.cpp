// The BPE model of tokenizer.json, as `tokenizers` (models/bpe) applies it: a
// word's characters become vocabulary ids (or byte-fallback ids <0xXX>, or the
// unk id, fused when fuse_unk), then merges apply lowest rank first, leftmost
// first among equal ranks.
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <queue>

#include "components.h"
#include "smoe/core/error.h"
#include "smoe/io/json.h"
#include "smoe/text/unicode.h"

namespace smoe {

namespace {

std::string optional_string(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return "";
  SMOE_CHECK_INPUT(j[key].is_string(), where, ": \"", key, "\" is not a string");
  return j[key].get<std::string>();
}

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

}  // namespace

BpeModel::BpeModel(const nlohmann::json& m, const std::string& where) {
  static std::atomic<uint64_t> models{0};
  serial_ = ++models;
  const std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "BPE";
  SMOE_CHECK_INPUT(type == "BPE", where, ": model ", type, " is not supported (smoe supports BPE)");
  SMOE_CHECK_INPUT(!m.contains("dropout") || m["dropout"].is_null() || m["dropout"] == 0.0, where,
                   ": BPE dropout is not supported (it makes encoding random)");
  SMOE_CHECK_INPUT(m.contains("vocab") && m["vocab"].is_object(), where, ": the BPE model has no \"vocab\" object");
  SMOE_CHECK_INPUT(m.contains("merges") && m["merges"].is_array(), where, ": the BPE model has no \"merges\" list");
  vocab_.reserve(m["vocab"].size());
  for (const auto& [token, id] : m["vocab"].items()) {
    const int64_t i = json_to_int(id, where, "the vocabulary id of " + json_quote(token));
    // Ids are dense in real files; a few gaps are allowed, not 2^31 (the id table is a vector).
    const auto entries = static_cast<int64_t>(m["vocab"].size());
    SMOE_CHECK_INPUT(i >= 0 && i < entries + (int64_t{1} << 20), where, ": vocabulary id ", i, " of ",
                     json_quote(token), " is out of range (the vocabulary has ", entries, " entries)");
    vocab_[token] = static_cast<int32_t>(i);
    if (static_cast<size_t>(i) >= tokens_.size()) tokens_.resize(static_cast<size_t>(i) + 1);
    tokens_[static_cast<size_t>(i)] = token;
  }
  prefix_ = optional_string(m, "continuing_subword_prefix", where);
  suffix_ = optional_string(m, "end_of_word_suffix", where);
  fuse_unk_ = json_bool(m, "fuse_unk", false, where);
  byte_fallback_ = json_bool(m, "byte_fallback", false, where);
  ignore_merges_ = json_bool(m, "ignore_merges", false, where);
  const std::string unk = optional_string(m, "unk_token", where);
  if (!unk.empty()) {
    auto it = vocab_.find(unk);
    SMOE_CHECK_INPUT(it != vocab_.end(), where, ": the unk token ", json_quote(unk), " is not in the vocabulary");
    unk_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = static_cast<int32_t>(token_to_id(name));
  }
  const auto& merges = m["merges"];
  merges_.reserve(merges.size());
  int32_t rank = 0;
  for (const auto& entry : merges) {
    std::string a, b;
    if (entry.is_string()) {
      const std::string& s = entry.get_ref<const std::string&>();
      if (s.compare(0, 8, "#version") == 0) continue;
      const size_t space = s.find(' ');
      SMOE_CHECK_INPUT(space != std::string::npos && s.find(' ', space + 1) == std::string::npos, where, ": merge ",
                       rank, " ", json_quote(s), " is not two tokens separated by one space");
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else {
      SMOE_CHECK_INPUT(entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string(), where,
                       ": merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]: ", json_quote(entry));
      a = entry[0].get<std::string>();
      b = entry[1].get<std::string>();
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    SMOE_CHECK_INPUT(ia != vocab_.end() && ib != vocab_.end(), where, ": merge ", rank, " names a token not in the vocabulary: ",
                     json_quote(ia == vocab_.end() ? a : b));
    const std::string merged = a + b.substr(std::min(prefix_.size(), b.size()));
    auto im = vocab_.find(merged);
    SMOE_CHECK_INPUT(im != vocab_.end(), where, ": merge ", rank, " makes ", json_quote(merged),
                     ", which is not in the vocabulary");
    merges_[pair_key(ia->second, ib->second)] = {rank, im->second};  // a repeated pair: the last wins, as in `tokenizers`
    ++rank;
  }
}

int64_t BpeModel::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id >= size() || tokens_[static_cast<size_t>(id)].empty()) return nullptr;
  return &tokens_[static_cast<size_t>(id)];
}

void BpeModel::merge(std::vector<int32_t>& ids) const {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  std::vector<char> alive(static_cast<size_t>(n), 1);
  for (int i = 0; i < n; ++i) {
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Merge {
    int32_t rank;
    int pos;
    int32_t id;
    bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
  auto push = [&](int pos) {
    const int nx = next[static_cast<size_t>(pos)];
    if (nx < 0) return;
    auto it = merges_.find(pair_key(ids[static_cast<size_t>(pos)], ids[static_cast<size_t>(nx)]));
    if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    const auto p = static_cast<size_t>(top.pos);
    if (!alive[p] || next[p] < 0) continue;
    const auto nx = static_cast<size_t>(next[p]);
    auto it = merges_.find(pair_key(ids[p], ids[nx]));
    if (it == merges_.end() || it->second.second != top.id) continue;
    ids[p] = top.id;
    alive[nx] = 0;
    next[p] = next[nx];
    if (next[p] >= 0) prev[static_cast<size_t>(next[p])] = top.pos;
    if (prev[p] >= 0) push(prev[p]);
    push(top.pos);
  }
  size_t w = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    if (alive[i]) ids[w++] = ids[i];
  ids.resize(w);
}

void BpeModel::tokenize(const std::string& word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One cache per thread, for the model that used it last (by serial number: a
  // later model may reuse a freed one's address).
  thread_local uint64_t cache_owner = 0;
  thread_local std::unordered_map<std::string, std::vector<int32_t>> cache;
  if (cache_owner != serial_) {
    cache.clear();
    cache_owner = serial_;
  }
  auto hit = cache.find(word);
  if (hit != cache.end()) {
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return;
  }
  std::vector<int32_t> ids;
  int32_t unk_pending = -1;
  for (size_t i = 0, len = 0; i < word.size(); i += len) {
    utf8_at(word, i, &len);
    std::string s = word.substr(i, len);
    if (i > 0) s.insert(0, prefix_);
    if (i + len == word.size()) s += suffix_;
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (unk_pending >= 0) ids.push_back(unk_pending);
      unk_pending = -1;
      ids.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : s) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : s) ids.push_back(byte_ids_[b]);
        continue;
      }
    }
    if (unk_ >= 0) {
      if (unk_pending >= 0 && !fuse_unk_) ids.push_back(unk_pending);
      unk_pending = unk_;
    }
  }
  if (unk_pending >= 0) ids.push_back(unk_pending);
  merge(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (word.size() < 256) {
    if (cache.size() >= 65536) cache.clear();
    cache.emplace(word, std::move(ids));
  }
}

}  // namespace smoe
