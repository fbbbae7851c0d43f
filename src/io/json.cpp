#include "smoe/io/json.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "smoe/core/error.h"
#include "smoe/core/file.h"

namespace smoe {

namespace {

using json = nlohmann::json;

// Builds the document like nlohmann's own DOM parser, refusing depth beyond the
// limit (nlohmann recurses when it copies, prints or destroys) and duplicate keys
// (nlohmann silently keeps the last).
class BoundedBuilder {
 public:
  explicit BoundedBuilder(json& root) : root_(root) {}
  std::string error;

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(json::number_integer_t v) { return put(v); }
  bool number_unsigned(json::number_unsigned_t v) { return put(v); }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(v); }
  bool string(json::string_t& v) { return put(std::move(v)); }
  bool binary(json::binary_t& v) { return put(json::binary(std::move(v))); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    json& obj = *stack_.back();
    if (obj.contains(k)) {
      error = str("duplicate key '", clip(k), "'");
      return false;
    }
    slot_ = &obj[k];
    return true;
  }
  bool parse_error(std::size_t position, const std::string& last_token, const nlohmann::detail::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 9: syntax error while parsing value -
    // invalid string: ill-formed UTF-8 byte; last read: '...'": the part after " - ", before "; last read".
    std::string what = e.what();
    const size_t last = what.find("; last read");
    if (last != std::string::npos) what = what.substr(0, last);
    const size_t dash = what.rfind(" - ");
    const size_t colon = what.find(": ");
    if (dash != std::string::npos)
      what = what.substr(dash + 3);
    else if (colon != std::string::npos)
      what = what.substr(colon + 2);
    error = str(clip(what, 160), " at byte ", position, " (near '", clip(last_token), "')");
    return false;
  }

 private:
  json& root_;
  std::vector<json*> stack_;
  json* slot_ = nullptr;

  template <typename V>
  json* place(V&& v) {
    if (stack_.empty()) {
      root_ = json(std::forward<V>(v));
      return &root_;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.emplace_back(std::forward<V>(v));
      return &top.back();
    }
    *slot_ = json(std::forward<V>(v));
    return slot_;
  }
  template <typename V>
  bool put(V&& v) {
    place(std::forward<V>(v));
    return true;
  }
  bool open(json v) {
    if (stack_.size() >= static_cast<size_t>(kMaxJsonDepth)) {
      error = str("nested deeper than ", kMaxJsonDepth, " levels");
      return false;
    }
    stack_.push_back(place(std::move(v)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }
};

}  // namespace

nlohmann::json parse_json(const char* begin, const char* end, const std::string& where) {
  json root;
  BoundedBuilder builder(root);
  bool ok = false;
  try {
    ok = json::sax_parse(begin, end, &builder);
  } catch (const json::exception& e) {
    builder.error = clip(e.what(), 160);
  }
  if (!ok) {
    json discard;
    root.swap(discard);  // a partial document may be deep only up to the limit: safe to free
    throw InputError(str(where, ": not valid JSON: ", builder.error.empty() ? "parse failed" : builder.error));
  }
  return root;
}

nlohmann::json parse_json(const std::string& text, const std::string& where) {
  return parse_json(text.data(), text.data() + text.size(), where);
}

nlohmann::json read_json_file(const std::string& path) {
  return parse_json(read_file(path, "JSON file", kMaxJsonBytes), path);
}

std::string json_quote(const nlohmann::json& v) {
  // dump() of a big value is itself big: print at most a few levels' worth.
  if (v.is_structured() && v.size() > 16) return str(v.is_array() ? "an array" : "an object", " of ", v.size(), " entries");
  return clip(v.dump(), 80);
}

int64_t json_to_int(const nlohmann::json& v, const std::string& where, const std::string& what) {
  SMOE_CHECK_INPUT(v.is_number_integer(), where, ": ", what, " must be an integer, found ", json_quote(v));
  SMOE_CHECK_INPUT(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX), where, ": ",
                   what, " ", v.get<uint64_t>(), " is beyond the largest integer smoe reads (2^63 - 1)");
  return v.get<int64_t>();
}

void write_file(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SMOE_CHECK_SYS(fd, path, ": cannot create");
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      const std::string why = errno_text();
      ::close(fd);
      throw RuntimeError(str(path, ": write failed: ", why));
    }
    done += static_cast<size_t>(w);
  }
  SMOE_CHECK_SYS(::close(fd), path, ": close failed");
}

void write_json_file(const std::string& path, const nlohmann::json& value, int indent) {
  write_file(path, value.dump(indent) + "\n");
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
  return json_to_int(*v, path, "'" + key + "'");
}

int64_t json_int(const nlohmann::json& obj, const std::string& key, int64_t fallback, const std::string& path) {
  return field(obj, key, path) ? json_int(obj, key, path) : fallback;
}

double json_double(const nlohmann::json& obj, const std::string& key, const std::string& path) {
  const auto* v = field(obj, key, path);
  SMOE_CHECK_INPUT(v != nullptr, path, ": missing required key '", key, "'");
  SMOE_CHECK_INPUT(v->is_number(), path, ": '", key, "' must be a number, found ", json_quote(*v));
  return v->get<double>();
}

double json_double(const nlohmann::json& obj, const std::string& key, double fallback, const std::string& path) {
  return field(obj, key, path) ? json_double(obj, key, path) : fallback;
}

bool json_bool(const nlohmann::json& obj, const std::string& key, bool fallback, const std::string& path) {
  const auto* v = field(obj, key, path);
  if (!v) return fallback;
  SMOE_CHECK_INPUT(v->is_boolean(), path, ": '", key, "' must be true or false, found ", json_quote(*v));
  return v->get<bool>();
}

std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& path) {
  const auto* v = field(obj, key, path);
  SMOE_CHECK_INPUT(v != nullptr, path, ": missing required key '", key, "'");
  SMOE_CHECK_INPUT(v->is_string(), path, ": '", key, "' must be a string, found ", json_quote(*v));
  return v->get<std::string>();
}

std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& fallback,
                        const std::string& path) {
  return field(obj, key, path) ? json_string(obj, key, path) : fallback;
}

}  // namespace smoe
