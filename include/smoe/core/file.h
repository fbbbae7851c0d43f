// Input files: what a job may read, and reading with a bound.
//
// A job reads regular files only (symlinks followed): a device such as /dev/zero
// or a FIFO would make it read forever or consume what another step needs.
#pragma once

#include <cstdint>
#include <string>

namespace smoe {

// The largest JSON document smoe reads whole (config.json, a safetensors header,
// an index, results, a placement map): 256 MiB.
constexpr uint64_t kMaxJsonBytes = 256ull << 20;

// InputError naming `path` (and what it is for, e.g. "corpus") when it is missing,
// a folder, or not a regular file.
void check_input_file(const std::string& path, const std::string& what);
// InputError naming `path` when it is missing or not a folder.
void check_input_dir(const std::string& path, const std::string& what);

// The whole file, at most `limit` bytes: InputError naming the file beyond that.
std::string read_file(const std::string& path, const std::string& what, uint64_t limit);

}  // namespace smoe
