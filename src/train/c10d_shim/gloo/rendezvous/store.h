// umamba: see ../context.h (stand-in for a Gloo header that LibTorch's wheel does not ship).
// ProcessGroupGloo.hpp defines an adapter class (GlooStore) over this interface inline; umamba
// never creates one, so only the overridden signatures matter here.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo::rendezvous {
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(const std::vector<std::string>& keys,
                    const std::chrono::milliseconds& timeout) = 0;
};
}  // namespace gloo::rendezvous
