#include "smoe/io/json.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "smoe/core/error.h"

namespace smoe {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SMOE_CHECK_INPUT(in.good(), path, ": cannot open: ", errno_text());
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, ": not valid JSON: ", e.what()));
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw RuntimeError(str(tmp, ": cannot create: ", errno_text()));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw RuntimeError(str(tmp, ": write failed: ", why));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw RuntimeError(str(tmp, ": fsync/close failed: ", why));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw RuntimeError(str("cannot rename ", tmp, " to ", path, ": ", why));
  }
}

void write_json_file(const std::string& path, const nlohmann::json& value, int indent) {
  write_file_atomic(path, value.dump(indent) + "\n");
}

namespace {
const nlohmann::json* field(const nlohmann::json& obj, const std::string& key, const std::string& path) {
  SMOE_CHECK_INPUT(obj.is_object(), path, ": expected a JSON object holding '", key, "'");
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}
}  // namespace

int64_t json_int(const nlohmann::json& obj, const std::string& key, const std::string& path) {
  const auto* v = field(obj, key, path);
  SMOE_CHECK_INPUT(v != nullptr, path, ": missing required key '", key, "'");
  SMOE_CHECK_INPUT(v->is_number_integer(), path, ": '", key, "' must be an integer, found ", v->dump());
  return v->get<int64_t>();
}

int64_t json_int(const nlohmann::json& obj, const std::string& key, int64_t fallback, const std::string& path) {
  return field(obj, key, path) ? json_int(obj, key, path) : fallback;
}

double json_double(const nlohmann::json& obj, const std::string& key, const std::string& path) {
  const auto* v = field(obj, key, path);
  SMOE_CHECK_INPUT(v != nullptr, path, ": missing required key '", key, "'");
  SMOE_CHECK_INPUT(v->is_number(), path, ": '", key, "' must be a number, found ", v->dump());
  return v->get<double>();
}

double json_double(const nlohmann::json& obj, const std::string& key, double fallback, const std::string& path) {
  return field(obj, key, path) ? json_double(obj, key, path) : fallback;
}

bool json_bool(const nlohmann::json& obj, const std::string& key, bool fallback, const std::string& path) {
  const auto* v = field(obj, key, path);
  if (!v) return fallback;
  SMOE_CHECK_INPUT(v->is_boolean(), path, ": '", key, "' must be true or false, found ", v->dump());
  return v->get<bool>();
}

std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& path) {
  const auto* v = field(obj, key, path);
  SMOE_CHECK_INPUT(v != nullptr, path, ": missing required key '", key, "'");
  SMOE_CHECK_INPUT(v->is_string(), path, ": '", key, "' must be a string, found ", v->dump());
  return v->get<std::string>();
}

}  // namespace smoe
