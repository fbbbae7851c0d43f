// The output writer, the JSON entry point, strict numbers and bounded reads: what
// every job relies on to never destroy an input or choke on hostile text.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/numbers.h"
#include "smoe/core/output.h"
#include "smoe/io/json.h"

namespace smoe {
namespace {

namespace fs = std::filesystem;

class OutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("smoe-output-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string at(const std::string& name) const { return (dir_ / name).string(); }
  static void put(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
  static std::string get(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // Every file and folder under dir_, to show that nothing was left or removed.
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string refusal(const OutputSpec& spec) const {
    const auto before = listing();
    try {
      AtomicOutput out(spec);
    } catch (const InputError& e) {
      EXPECT_EQ(listing(), before) << "a refused output changed the folder";
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

OutputSpec file_spec(const std::string& path, bool own = false) {
  OutputSpec s;
  s.path = path;
  s.job = "test";
  s.is_own = [own](const std::string&) { return own; };
  return s;
}

OutputSpec folder_spec(const std::string& path) {
  OutputSpec s;
  s.path = path;
  s.job = "test";
  s.directory = true;
  return s;
}

TEST_F(OutputTest, FileIsWrittenUnderATemporaryAndRenamed) {
  AtomicOutput out(file_spec(at("a.txt")));
  EXPECT_FALSE(fs::exists(at("a.txt")));
  EXPECT_NE(out.temp().find(at("a.txt") + ".tmp." + std::to_string(::getpid()) + "."), std::string::npos);
  EXPECT_TRUE(fs::is_regular_file(out.temp())) << "the temporary exists before the work, proving the place writable";
  put(out.temp(), "result");
  out.commit();
  EXPECT_EQ(get(at("a.txt")), "result");
  EXPECT_FALSE(fs::exists(out.temp()));
}

TEST_F(OutputTest, TemporaryRemovedWithoutCommit) {
  std::string temp;
  {
    AtomicOutput out(folder_spec(at("d")));
    temp = out.temp();
    put(temp + "/partial", "x");
  }
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_FALSE(fs::exists(at("d")));
}

TEST_F(OutputTest, ExistingTargetNotOursIsRefusedUnlessOverwrite) {
  put(at("a.txt"), "precious");
  EXPECT_NE(refusal(file_spec(at("a.txt"))).find("--overwrite"), std::string::npos);
  EXPECT_EQ(get(at("a.txt")), "precious");
  OutputSpec s = file_spec(at("a.txt"));
  s.overwrite = true;
  AtomicOutput out(s);
  put(out.temp(), "new");
  out.commit();
  EXPECT_EQ(get(at("a.txt")), "new");
}

TEST_F(OutputTest, EarlierOutputOfTheSameJobIsReplaced) {
  put(at("a.txt"), "old");
  AtomicOutput out(file_spec(at("a.txt"), /*own=*/true));
  put(out.temp(), "new");
  out.commit();
  EXPECT_EQ(get(at("a.txt")), "new");
}

TEST_F(OutputTest, FolderCarriesTheMarkerAndIsSwappedWhole) {
  {
    AtomicOutput out(folder_spec(at("d/")));  // a trailing slash names the same folder
    EXPECT_EQ(out.path(), at("d"));
    put(out.temp() + "/one", "1");
    out.commit();
  }
  EXPECT_TRUE(fs::exists(at("d/") + kOutputMarker));
  AtomicOutput again(folder_spec(at("d")));  // our own earlier output: no --overwrite needed
  put(again.temp() + "/two", "2");
  again.commit();
  EXPECT_FALSE(fs::exists(at("d/one")));
  EXPECT_EQ(get(at("d/two")), "2");
  const std::vector<std::string> expected = {at("d"), at("d/") + kOutputMarker, at("d/two")};
  EXPECT_EQ(listing(), expected) << "the earlier folder was removed, nothing else left";
  fs::create_directories(at("other-job"));
  put(at("other-job/") + kOutputMarker, "{\"job\": \"prune\"}");
  EXPECT_NE(refusal(folder_spec(at("other-job"))).find("not an earlier output of smoe test"), std::string::npos);
}

TEST_F(OutputTest, InputsAreNeverTargets) {
  fs::create_directories(at("model"));
  put(at("model/config.json"), "{}");
  for (const std::string& target : std::vector<std::string>{at("model"), at("model/pruned"), dir_.string(), at("model/../model/")}) {
    OutputSpec s = folder_spec(target);
    s.overwrite = true;
    s.inputs = {at("model")};
    EXPECT_NE(refusal(s).find("input"), std::string::npos) << target;
  }
  OutputSpec s = file_spec(at("model/config.json"));
  s.overwrite = true;
  s.inputs = {at("model/config.json")};
  EXPECT_NE(refusal(s).find("input"), std::string::npos);
  EXPECT_EQ(get(at("model/config.json")), "{}");
}

TEST_F(OutputTest, LinksDevicesAndNonsenseNamesAreRefused) {
  put(at("target"), "keep");
  fs::create_symlink(at("target"), at("link"));
  OutputSpec s = file_spec(at("link"));
  s.overwrite = true;
  EXPECT_NE(refusal(s).find("symbolic link"), std::string::npos);
  EXPECT_EQ(get(at("target")), "keep");
  s = file_spec("/dev/null");
  s.overwrite = true;
  EXPECT_NE(refusal(s).find("special file"), std::string::npos);
  for (const std::string& bad : std::vector<std::string>{"", "/", ".", at(".."), "///"}) {
    s = file_spec(bad);
    EXPECT_THROW(AtomicOutput{s}, InputError) << "'" << bad << "'";
  }
  s = file_spec(at("target/under-a-file"));
  EXPECT_NE(refusal(s).find("cannot create"), std::string::npos);
}

TEST_F(OutputTest, NeverReplacesWhatAppearedDuringTheJob) {
  for (bool directory : {false, true}) {
    const std::string target = at(directory ? "d" : "f");
    AtomicOutput out(directory ? folder_spec(target) : file_spec(target));
    put(out.temp() + (directory ? "/result" : ""), "result");
    if (directory) fs::create_directories(target);
    put(directory ? target + "/thesis.tex" : target, "the user's");
    EXPECT_THROW(out.commit(), InputError);
    EXPECT_EQ(get(directory ? target + "/thesis.tex" : target), "the user's");
    EXPECT_TRUE(fs::exists(out.temp())) << "the finished result stays in the temporary";
    fs::remove_all(out.temp());
  }
  // An earlier output swapped for something else while the job ran is not replaced either.
  put(at("g"), "old");
  OutputSpec spec = file_spec(at("g"));
  spec.is_own = [](const std::string& p) { return get(p) == "old"; };  // recognises its own outputs by content
  AtomicOutput out(spec);
  put(at("g2"), "someone else's");  // made while the old file still holds its inode
  fs::rename(at("g2"), at("g"));
  EXPECT_THROW(out.commit(), InputError);
  EXPECT_EQ(get(at("g")), "someone else's");
  fs::remove(out.temp());
  // Another run of the same job that finished first is replaced, as at the start.
  put(at("g"), "old");
  AtomicOutput second(spec);
  put(second.temp(), "old");
  put(at("g3"), "old");
  fs::rename(at("g3"), at("g"));
  EXPECT_NO_THROW(second.commit());
}

TEST_F(OutputTest, StopSignalCleanupRemovesLiveTemporaries) {
  AtomicOutput out(folder_spec(at("d")));
  put(out.temp() + "/partial", "x");
  remove_output_temporaries();
  EXPECT_FALSE(fs::exists(out.temp()));
}

TEST_F(OutputTest, PathWithin) {
  EXPECT_TRUE(path_within(at("a/b"), at("a")));
  EXPECT_TRUE(path_within(at("a"), at("a/")));
  EXPECT_FALSE(path_within(at("ab"), at("a")));
  EXPECT_FALSE(path_within(at("a"), at("a/b")));
}

TEST(Json, DepthDuplicatesAndMessages) {
  EXPECT_EQ(parse_json("{\"a\": [1, {\"b\": null}]}", "x.json")["a"][1]["b"], nullptr);
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  try {
    parse_json(deep, "deep.json");
    FAIL() << "a million levels parsed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("deep.json: not valid JSON: nested deeper than"), std::string::npos);
  }
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_NO_THROW(parse_json(ok, "ok.json"));
  try {
    parse_json("{\"k\": 1, \"k\": 2}", "dup.json");
    FAIL() << "a duplicate key passed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate key 'k'"), std::string::npos);
  }
  try {
    parse_json("{\"text\": \"" + std::string(50 << 20, 'x'), "big.jsonl:1");
    FAIL() << "an unterminated string parsed";
  } catch (const InputError& e) {
    EXPECT_LT(std::string(e.what()).size(), 600u) << "the message quotes the whole input";
  }
  EXPECT_THROW(parse_json("{} trailing", "t.json"), InputError);
}

TEST(Json, IntegersAreStrict) {
  const nlohmann::json j = parse_json(R"({"a": 9223372036854775807, "b": 9223372036854775808, "c": 2.0, "d": "3"})", "x");
  EXPECT_EQ(json_int(j, "a", "x"), INT64_MAX);
  for (const char* k : {"b", "c", "d"}) EXPECT_THROW(json_int(j, k, "x"), InputError) << k;
  try {
    json_int(j, "b", "x");
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("9223372036854775808"), std::string::npos) << e.what();
  }
}

TEST(Numbers, StrictParsing) {
  EXPECT_EQ(parse_int("-12", "n"), -12);
  EXPECT_EQ(parse_int("9223372036854775807", "n"), INT64_MAX);
  for (const char* bad : {"", "0abc", "1.5", " 1", "1 ", "+", "-", "9223372036854775808", "0x10"})
    EXPECT_THROW(parse_int(bad, "n"), InputError) << "'" << bad << "'";
  EXPECT_DOUBLE_EQ(parse_number("1e8", "x"), 1e8);
  EXPECT_DOUBLE_EQ(parse_number("0.5", "x"), 0.5);
  for (const char* bad : {"", "inf", "nan", "-inf", "1e999", "2x", " 2"})
    EXPECT_THROW(parse_number(bad, "x"), InputError) << "'" << bad << "'";
}

TEST(Files, RegularFilesOnlyAndBounded) {
  EXPECT_THROW(check_input_file("/dev/zero", "corpus"), InputError);
  EXPECT_THROW(check_input_file(fs::temp_directory_path().string(), "corpus"), InputError);
  EXPECT_THROW(read_file("/dev/zero", "corpus", 1 << 20), InputError);
  const std::string path = (fs::temp_directory_path() / ("smoe-read-" + std::to_string(::getpid()))).string();
  std::ofstream(path) << std::string(1000, 'x');
  EXPECT_EQ(read_file(path, "f", 1000).size(), 1000u);
  try {
    read_file(path, "f", 999);
    FAIL() << "read past the limit";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("limit of 999 bytes"), std::string::npos);
  }
  fs::remove(path);
}

}  // namespace
}  // namespace smoe
