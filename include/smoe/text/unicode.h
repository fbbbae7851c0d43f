// UTF-8 and Unicode character classes for the tokenizers, through ICU; the
// classes follow Rust's `char` methods, which the Hugging Face `tokenizers`
// library uses.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace smoe {

// The code point starting at s[i] of valid UTF-8; sets *len to its byte length.
char32_t utf8_at(std::string_view s, size_t i, size_t* len);
// Byte length of the valid UTF-8 character starting with byte `lead`.
size_t utf8_length(unsigned char lead);
void append_utf8(std::string& out, char32_t c);
// The start of the character that ends at byte `end` (> 0) of valid UTF-8.
size_t utf8_char_start(std::string_view s, size_t end);
// The byte offset of the first invalid UTF-8 sequence in `s`, or npos.
size_t utf8_invalid_at(std::string_view s);
// `bytes` as UTF-8, each maximal invalid subsequence replaced by U+FFFD, as
// Rust's String::from_utf8_lossy does.
std::string utf8_lossy(std::string_view bytes);

bool is_whitespace(char32_t c);    // White_Space
bool is_alphanumeric(char32_t c);  // Alphabetic, or Nd/Nl/No
bool is_numeric(char32_t c);       // Nd/Nl/No
bool is_punctuation(char32_t c);   // ASCII punctuation, or P*
// Python's str.isspace: general category Zs, or bidirectional class WS, B or S.
bool is_python_space(char32_t c);
// Rust regex's \w: Alphabetic, marks, Nd, Pc, Join_Control.
bool is_word(char32_t c);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::string normalize_unicode(const std::string& s, NormalForm form);
std::string to_lower(const std::string& s);

}  // namespace smoe
