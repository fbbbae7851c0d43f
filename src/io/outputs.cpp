#include "smoe/io/outputs.h"

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/io/hdf5.h"
#include "smoe/io/json.h"
#include "smoe/io/safetensors.h"

namespace smoe {

OutputSpec hdf5_output(const std::string& path, const std::string& job, const std::string& format) {
  OutputSpec s;
  s.path = path;
  s.job = job;
  s.is_own = [format](const std::string& p) { return h5::file_format(p) == format; };
  return s;
}

OutputSpec json_output(const std::string& path, const std::string& job) {
  OutputSpec s;
  s.path = path;
  s.job = job;
  s.is_own = [job](const std::string& p) {
    try {
      const nlohmann::json j = read_json_file(p);
      return j.is_object() && j.contains("smoe") && j["smoe"].is_object() && j["smoe"].value("job", "") == job;
    } catch (const std::exception&) {
      return false;
    }
  };
  return s;
}

OutputSpec safetensors_output(const std::string& path, const std::string& job) {
  OutputSpec s;
  s.path = path;
  s.job = job;
  s.is_own = [job](const std::string& p) {
    try {
      const SafetensorsFile f(p);
      const auto it = f.header().metadata.find("smoe_job");
      return it != f.header().metadata.end() && it->second == job;
    } catch (const std::exception&) {
      return false;
    }
  };
  return s;
}

OutputSpec folder_output(const std::string& path, const std::string& job) {
  OutputSpec s;
  s.path = path;
  s.job = job;
  s.directory = true;
  return s;
}

}  // namespace smoe
