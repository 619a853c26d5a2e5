// SHA-256 (FIPS 180-4) of files and byte strings, for the weights hash recorded in model folders.
// Plain portable implementation; no LibTorch, no OpenSSL.
#pragma once

#include <string>
#include <string_view>

namespace umamba::model {

// Lower-case hex digest of `bytes`.
std::string sha256_hex(std::string_view bytes);
// Lower-case hex digest of a file's contents; throws FileError when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace umamba::model
