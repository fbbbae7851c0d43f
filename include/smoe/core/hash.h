// SHA-256 of files and strings (OpenSSL), for provenance.
#pragma once

#include <string>

namespace smoe {

std::string sha256_hex(const std::string& bytes);
// InputError naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace smoe
