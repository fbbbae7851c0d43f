#include "smoe/core/hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <vector>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/signals.h"

namespace smoe {

namespace {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    SMOE_ASSERT(ctx_ && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1, "SHA-256 init failed");
  }
  void update(const char* data, size_t n) {
    SMOE_ASSERT(EVP_DigestUpdate(ctx_.get(), data, n) == 1, "SHA-256 update failed");
  }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    SMOE_ASSERT(EVP_DigestFinal_ex(ctx_.get(), digest, &len) == 1, "SHA-256 final failed");
    std::string out;
    char buf[3];
    for (unsigned int i = 0; i < len; ++i) {
      std::snprintf(buf, sizeof buf, "%02x", digest[i]);
      out += buf;
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

}  // namespace

std::string sha256_hex(const std::string& bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.hex();
}

std::string sha256_file(const std::string& path) {
  check_input_file(path, "input");
  std::ifstream in(path, std::ios::binary);
  SMOE_CHECK_INPUT(in.good(), path, ": cannot open: ", errno_text());
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    if (stop_requested()) throw StopError(str(path, ": stopped by a signal while hashing it"));
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  SMOE_CHECK_INPUT(in.eof(), path, ": read error");
  return h.hex();
}

}  // namespace smoe
