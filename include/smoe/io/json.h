// Reading JSON files and their fields with errors that name the file and key.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace smoe {

// Reads a whole JSON file; InputError naming the file on a missing file or a parse error.
nlohmann::json read_json_file(const std::string& path);

// Writes JSON under a temporary name and renames it to `path`.
void write_json_file(const std::string& path, const nlohmann::json& value, int indent = 2);

// Typed access to an object's field; InputError naming `path` and `key` when the
// field is absent (for the required forms) or of the wrong type.
int64_t json_int(const nlohmann::json& obj, const std::string& key, const std::string& path);
int64_t json_int(const nlohmann::json& obj, const std::string& key, int64_t fallback, const std::string& path);
double json_double(const nlohmann::json& obj, const std::string& key, double fallback, const std::string& path);
double json_double(const nlohmann::json& obj, const std::string& key, const std::string& path);
bool json_bool(const nlohmann::json& obj, const std::string& key, bool fallback, const std::string& path);
std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& path);

// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace smoe
