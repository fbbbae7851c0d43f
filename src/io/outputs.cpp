#include "smoe/io/outputs.h"

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/io/hdf5.h"
#include "smoe/io/json.h"
#include "smoe/io/safetensors.h"

namespace smoe {

namespace {

// A file output recognised by `is_own`; a file it cannot read is not its own.
OutputSpec file_output(const std::string& path, const std::string& job, std::function<bool(const std::string&)> is_own) {
  OutputSpec s;
  s.path = path;
  s.job = job;
  s.is_own = [is_own](const std::string& p) {
    try {
      return is_own(p);
    } catch (const std::exception&) {
      return false;
    }
  };
  return s;
}

}  // namespace

OutputSpec hdf5_output(const std::string& path, const std::string& job, const std::string& format) {
  return file_output(path, job, [format](const std::string& p) { return h5::file_format(p) == format; });
}

OutputSpec json_output(const std::string& path, const std::string& job) {
  return file_output(path, job, [job](const std::string& p) {
    const nlohmann::json j = read_json_file(p);
    return j.is_object() && j.contains("smoe") && j["smoe"].is_object() && j["smoe"].contains("job") &&
           j["smoe"]["job"] == job;
  });
}

OutputSpec safetensors_output(const std::string& path, const std::string& job) {
  return file_output(path, job, [job](const std::string& p) {
    const SafetensorsFile f(p);
    const auto it = f.header().metadata.find("smoe_job");
    return it != f.header().metadata.end() && it->second == job;
  });
}

OutputSpec folder_output(const std::string& path, const std::string& job) {
  OutputSpec s;
  s.path = path;
  s.job = job;
  s.directory = true;
  return s;
}

}  // namespace smoe
