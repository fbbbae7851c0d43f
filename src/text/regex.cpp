#include "smoe/text/regex.h"

#include <oniguruma.h>

#include <mutex>

#include "smoe/core/error.h"
#include "smoe/text/unicode.h"

namespace smoe {

namespace {

std::string onig_message(int code, OnigErrorInfo* info) {
  OnigUChar buf[ONIG_MAX_ERROR_MESSAGE_LEN];
  const int n = info ? onig_error_code_to_str(buf, code, info) : onig_error_code_to_str(buf, code);
  return std::string(reinterpret_cast<const char*>(buf), n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) : pattern_(pattern), where_(where) {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    const int rc = onig_initialize(encodings, 1);
    SMOE_ASSERT(rc == ONIG_NORMAL, "onig_initialize failed: ", onig_message(rc, nullptr));
  });
  SMOE_CHECK_INPUT(utf8_invalid_at(pattern) == std::string::npos, where, ": the regex is not valid UTF-8");
  OnigRegex re = nullptr;
  OnigErrorInfo info;
  const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
  const int rc = onig_new(&re, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
  SMOE_CHECK_INPUT(rc == ONIG_NORMAL, where, ": the regex ", pattern.substr(0, 80), " does not compile: ",
                   onig_message(rc, &info));
  regex_ = re;
}

Regex::~Regex() {
  if (regex_) onig_free(static_cast<OnigRegex>(regex_));
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  OnigRegion* region = onig_region_new();
  SMOE_ASSERT(region, "onig_region_new failed");
  const auto* s = reinterpret_cast<const OnigUChar*>(text.data());
  const OnigUChar* end = s + text.size();
  size_t from = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (from <= text.size()) {
    const int r = onig_search(static_cast<OnigRegex>(regex_), s, end, s + from, end, region, ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH) break;
    if (r < 0) {
      onig_region_free(region, 1);
      throw InputError(str(where_, ": the regex ", pattern_.substr(0, 80), " failed on a text of ", text.size(),
                           " bytes: ", onig_message(r, nullptr)));
    }
    const auto b = static_cast<size_t>(region->beg[0]), e = static_cast<size_t>(region->end[0]);
    if (b == e && have_last && last_end == e) {
      size_t len = 1;
      if (from < text.size()) utf8_at(text, from, &len);
      from += len;
      continue;
    }
    from = e;
    have_last = true;
    last_end = e;
    out.emplace_back(b, e);
  }
  onig_region_free(region, 1);
  return out;
}

}  // namespace smoe
