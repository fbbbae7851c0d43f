// The one way smoe reads JSON: bounded, strict, with errors that name the file.
//
// parse_json refuses nesting deeper than kMaxJsonDepth, duplicate keys and
// trailing junk, and quotes at most ~80 characters of the offending input; files
// are read up to kMaxJsonBytes. The typed accessors refuse floats where integers
// are asked for and integers beyond int64.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace smoe {

constexpr int kMaxJsonDepth = 128;

// Parses `text`; InputError naming `where` (a file, or file:line) on any fault.
nlohmann::json parse_json(const std::string& text, const std::string& where);
nlohmann::json parse_json(const char* begin, const char* end, const std::string& where);

// Reads a whole JSON file (a regular file, at most kMaxJsonBytes); InputError naming it.
nlohmann::json read_json_file(const std::string& path);

// Writes JSON to `path`, a file in an AtomicOutput's temporary (core/output.h),
// which makes it final.
void write_json_file(const std::string& path, const nlohmann::json& value, int indent = 2);

// `v` as an int64: InputError naming `where` and `what` for a float, a string, or an
// integer beyond int64 (2^63 and more).
int64_t json_to_int(const nlohmann::json& v, const std::string& where, const std::string& what);

// Typed access to an object's field; InputError naming `path` and `key` when the
// field is absent (for the required forms) or of the wrong type.
int64_t json_int(const nlohmann::json& obj, const std::string& key, const std::string& path);
int64_t json_int(const nlohmann::json& obj, const std::string& key, int64_t fallback, const std::string& path);
double json_double(const nlohmann::json& obj, const std::string& key, double fallback, const std::string& path);
double json_double(const nlohmann::json& obj, const std::string& key, const std::string& path);
bool json_bool(const nlohmann::json& obj, const std::string& key, bool fallback, const std::string& path);
std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& path);
std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& fallback,
                        const std::string& path);

// A JSON value in a message: at most ~80 characters.
std::string json_quote(const nlohmann::json& v);

// Writes `bytes` to `path` (created or truncated), for files inside an AtomicOutput's temporary.
void write_file(const std::string& path, const std::string& bytes);

}  // namespace smoe
