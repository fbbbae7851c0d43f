// Numbers written as text (option lists, labels, grid files, environment
// variables), read strictly: the whole text, no overflow, finite.
#pragma once

#include <cstdint>
#include <string>

namespace smoe {

// A decimal integer ("-12"); InputError naming `what` for "0abc", "2.5", "" or
// anything beyond int64.
int64_t parse_int(const std::string& text, const std::string& what);
// A finite decimal number ("2", "0.5", "1e8"); InputError naming `what` for junk, inf or nan.
double parse_number(const std::string& text, const std::string& what);

}  // namespace smoe
