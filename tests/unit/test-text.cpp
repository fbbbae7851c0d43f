// The tokenizer pieces that the library comparison (tests/tokenizers) reaches
// only through long inputs: UTF-8 repair, and Kimi-K2's cut of long runs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "smoe/core/error.h"
#include "smoe/text/tokenizer.h"
#include "smoe/text/unicode.h"

namespace smoe {
namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

TEST(Utf8, LossyReplacesEachMaximalInvalidSubpartOnce) {
  // As Python's bytes.decode("utf-8", "replace") and Rust's from_utf8_lossy.
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98"), "a" + kReplacement);                         // truncated 4-byte
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), kReplacement + kReplacement);                     // overlong lead
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), kReplacement + kReplacement + kReplacement);  // surrogate
  EXPECT_EQ(utf8_lossy("\xE2\x82" "a\xE2\x82\xAC"), kReplacement + "a\xE2\x82\xAC");
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), kReplacement + kReplacement + kReplacement + kReplacement);
  EXPECT_EQ(utf8_invalid_at("ok\xFF"), 2u);
  EXPECT_EQ(utf8_invalid_at("caf\xC3\xA9"), std::string::npos);
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? table[v & 63] : '=';
  }
  return out;
}

// Ranks for the 256 bytes and "aa" (256): the smallest file that shows the cut.
std::string tiktoken_file() {
  const std::string dir = ::testing::TempDir() + "smoe-tiktoken-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream f(dir + "/tiktoken.model");
  for (int b = 0; b < 256; ++b) f << base64(std::string(1, static_cast<char>(b))) << " " << b << "\n";
  f << base64("aa") << " 256\n";
  return dir + "/tiktoken.model";
}

TEST(Tiktoken, LongRunsAreCutAt25000CharactersAsKimiDoes) {
  const auto tok = make_tokenizer(tiktoken_file());
  EXPECT_EQ(tok->vocab_size(), 257 + 258);
  // "b" + 24,999 "a" is one piece of 25,000 letters: b, then 12,499 "aa" and one "a".
  EXPECT_EQ(tok->encode("b" + std::string(24999, 'a'), true).size(), 1u + 12499 + 1);
  // One "a" more is 25,001 letters: cut after 25,000, the last "a" alone, no "aa" across the cut.
  const auto ids = tok->encode("b" + std::string(25000, 'a'), true);
  ASSERT_EQ(ids.size(), 1u + 12499 + 1 + 1);
  EXPECT_EQ(ids.back(), 'a');
  // A run of spaces cut the same way (Python's isspace): 25,000 + 1.
  EXPECT_EQ(tok->encode(std::string(25001, ' '), true).size(), 25001u);
  EXPECT_EQ(tok->decode(ids, false), "b" + std::string(25000, 'a'));
  // Special tokens in text, by name; reserved ones too.
  const auto special = tok->encode("x<|reserved_token_300|>y", true);
  ASSERT_EQ(special.size(), 3u);
  EXPECT_EQ(special[1], 300);
}

TEST(Tokenizer, RefusesTextThatIsNotUtf8AndNamesTheByte) {
  const auto tok = make_tokenizer("byte");
  try {
    tok->encode("ok\xFF", true);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("UTF-8 at byte 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace smoe
