// Regular expressions as the Hugging Face `tokenizers` library runs them:
// Oniguruma, Ruby syntax, UTF-8, no options.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smoe {

class Regex {
 public:
  // InputError naming `where` and Oniguruma's message when `pattern` does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every match in `text`, as [begin, end) byte offsets, left to right, as the
  // `onig` crate's find_iter gives them (an empty match right after the previous
  // match is skipped by one character). `text` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::string where_;
  void* regex_ = nullptr;  // OnigRegex
};

}  // namespace smoe
