// The safetensors reader and writer: a round trip, and malformed files that must
// each give an InputError naming the file and the fault.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "smoe/core/error.h"
#include "smoe/io/safetensors.h"

namespace smoe {
namespace {

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "smoe-test-" + std::to_string(::getpid()) + "-" + name;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file with the given header text followed by `data_bytes` zero bytes.
std::string make_file(const std::string& header, size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

// Writes `bytes`, opens it, and returns the InputError's message ("" if none).
std::string open_error(const std::string& name, const std::string& bytes) {
  const std::string path = temp_path(name);
  write_bytes(path, bytes);
  try {
    SafetensorsFile f(path);
  } catch (const InputError& e) {
    std::remove(path.c_str());
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    return msg;
  }
  std::remove(path.c_str());
  return "";
}

TEST(Safetensors, RoundTripKeepsBytesShapesAndMetadata) {
  const std::string path = temp_path("roundtrip.safetensors");
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1e-3f};
  std::vector<uint16_t> b = {0x3f80, 0xc000, 0x4040};  // bf16 1, -2, 3
  std::vector<int64_t> c = {42, -7};
  {
    SafetensorsWriter w(path, {{"a", Dtype::F32, {2, 3}}, {"b", Dtype::BF16, {3}}, {"c", Dtype::I64, {2}},
                               {"empty", Dtype::F16, {0, 4}}},
                        {{"format", "pt"}, {"origin", "unit test"}});
    w.write("a", a.data(), a.size() * 4);
    w.write("b", b.data(), b.size() * 2);
    w.write("c", c.data(), c.size() * 8);
    w.write("empty", nullptr, 0);
    w.finish();
  }
  SafetensorsFile f(path);
  EXPECT_EQ(f.header().data_start % 8, 0u);
  EXPECT_EQ(f.header().metadata.at("origin"), "unit test");
  const TensorInfo& ia = f.info("a");
  EXPECT_EQ(ia.dtype, Dtype::F32);
  EXPECT_EQ(ia.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(f.bytes(ia), a.data(), 24), 0);
  const TensorInfo& ib = f.info("b");
  EXPECT_EQ(ib.dtype, Dtype::BF16);
  EXPECT_EQ(std::memcmp(f.bytes(ib), b.data(), 6), 0);
  EXPECT_EQ(std::memcmp(f.bytes(f.info("c")), c.data(), 16), 0);
  EXPECT_EQ(f.info("empty").nbytes(), 0u);
  EXPECT_THROW(f.info("missing"), InputError);
  std::remove(path.c_str());
}

TEST(Safetensors, WriterLeavesNoFileWhenNotFinished) {
  const std::string path = temp_path("partial.safetensors");
  {
    SafetensorsWriter w(path, {{"a", Dtype::F32, {2}}, {"b", Dtype::F32, {2}}});
    float x[2] = {1, 2};
    w.write("a", x, sizeof x);
  }
  EXPECT_EQ(::access(path.c_str(), F_OK), -1);
}

TEST(SafetensorsMalformed, EmptyFile) { EXPECT_NE(open_error("empty", "").find("too short"), std::string::npos); }

TEST(SafetensorsMalformed, HeaderLengthPastEnd) {
  std::string bytes = le64(1000) + "{}";
  EXPECT_NE(open_error("hlen", bytes).find("runs past the end of the file"), std::string::npos);
}

TEST(SafetensorsMalformed, HugeHeaderLength) {
  EXPECT_NE(open_error("huge", le64(1ull << 60) + "{}").find("exceeds the limit"), std::string::npos);
}

TEST(SafetensorsMalformed, HeaderNotJson) {
  EXPECT_NE(open_error("notjson", make_file("{\"a\": [1, 2", 0)).find("not valid JSON"), std::string::npos);
}

TEST(SafetensorsMalformed, HeaderNotObject) {
  EXPECT_NE(open_error("array", make_file("[1, 2, 3]", 0)).find("must be a JSON object"), std::string::npos);
}

TEST(SafetensorsMalformed, UnknownDtype) {
  auto msg = open_error("dtype", make_file(R"({"w":{"dtype":"F24","shape":[2],"data_offsets":[0,6]}})", 6));
  EXPECT_NE(msg.find("unknown dtype 'F24'"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, WrongDtypeForShape) {
  // F32 [2, 3] needs 24 bytes; the offsets give 12 (as if it were F16).
  auto msg = open_error("size", make_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}})", 12));
  EXPECT_NE(msg.find("needs 24"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, TruncatedData) {
  auto msg = open_error("trunc", make_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 10));
  EXPECT_NE(msg.find("run past the end of the data"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, TruncatedAfterWrite) {
  const std::string path = temp_path("cut.safetensors");
  {
    SafetensorsWriter w(path, {{"a", Dtype::F32, {64}}});
    std::vector<float> x(64, 1.0f);
    w.write("a", x.data(), 256);
    w.finish();
  }
  std::string bytes = read_bytes(path);
  std::remove(path.c_str());
  auto msg = open_error("cut2", bytes.substr(0, bytes.size() - 100));
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  auto msg = open_error("overlap", make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},
                                               "b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                                             24));
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
}

// Found by tests/fuzz/fuzz-safetensors: an empty tensor between two overlapping
// ones hid their overlap when only neighbours were compared.
TEST(SafetensorsMalformed, OverlapAcrossAnEmptyTensor) {
  auto msg = open_error("overlap-empty", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                                     "e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},
                                                     "b":{"dtype":"F32","shape":[2],"data_offsets":[6,14]}})",
                                                   16));
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, EmptyTensorInsideAnother) {
  // Holds no bytes: allowed anywhere in the data, as before.
  EXPECT_EQ(open_error("empty-inside", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                                  "e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                                                8)),
            "");
}

TEST(SafetensorsMalformed, BeginAfterEnd) {
  auto msg = open_error("order", make_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})", 8));
  EXPECT_NE(msg.find("begin after end"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, NegativeShape) {
  auto msg = open_error("neg", make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4));
  EXPECT_NE(msg.find("negative shape entry -1"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, MissingOffsets) {
  auto msg = open_error("nooff", make_file(R"({"a":{"dtype":"F32","shape":[1]}})", 4));
  EXPECT_NE(msg.find("data_offsets"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, ShapeOverflow) {
  auto msg = open_error("overflow", make_file(
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4));
  EXPECT_NE(msg.find("too large"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, MetadataNotStrings) {
  auto msg = open_error("meta", make_file(R"({"__metadata__":{"n":3}})", 0));
  EXPECT_NE(msg.find("__metadata__"), std::string::npos) << msg;
}

TEST(SafetensorsMalformed, MissingFile) {
  try {
    SafetensorsFile f(temp_path("does-not-exist.safetensors"));
    FAIL() << "opened a missing file";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos);
  }
}

TEST(SafetensorsIndex, RejectsMalformedIndexes) {
  struct Case {
    const char* text;
    const char* fault;
  } cases[] = {
      {"{\"weight_map\": {\"a\": ", "not valid JSON"},
      {"{\"metadata\": {}}", "no 'weight_map'"},
      {"{\"weight_map\": {\"a\": 3}}", "must be a file name"},
      {"{\"weight_map\": {\"a\": \"../escape.safetensors\"}}", "not a file name in the checkpoint folder"},
      {"{\"weight_map\": {}}", "weight_map is empty"},
  };
  for (const auto& c : cases) {
    const std::string path = temp_path("model.safetensors.index.json");
    write_bytes(path, c.text);
    try {
      read_safetensors_index(path);
      ADD_FAILURE() << "accepted " << c.text;
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.fault), std::string::npos) << msg;
    }
    std::remove(path.c_str());
  }
}

}  // namespace
}  // namespace smoe
