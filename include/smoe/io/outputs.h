// The output kinds of smoe's jobs, each recognising an earlier output of the same
// job so that a rerun may replace it (core/output.h does the rest).
#pragma once

#include <string>
#include <vector>

#include "smoe/core/output.h"

namespace smoe {

// An HDF5 file whose root attribute 'format' is `format` ("smoe-stats", "smoe-plan").
OutputSpec hdf5_output(const std::string& path, const std::string& job, const std::string& format);
// A JSON file whose "smoe" object says "job": `job`.
OutputSpec json_output(const std::string& path, const std::string& job);
// A safetensors file whose __metadata__ says smoe_job = `job`.
OutputSpec safetensors_output(const std::string& path, const std::string& job);
// A folder holding kOutputMarker for `job`.
OutputSpec folder_output(const std::string& path, const std::string& job);

}  // namespace smoe
