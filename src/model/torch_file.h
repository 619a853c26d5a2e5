// Reads files written by Python's torch.save (the zip format of PyTorch ≥ 1.6: `<name>/data.pkl`
// plus one record per storage) without Python and without executing anything.
//
// Method: a restricted unpickler (pickle protocols 2–5, the opcodes torch.save and numpy emit).
// It builds plain values — None, bool, int, float, str, bytes, list, tuple, dict, tensors — and
// resolves only a fixed set of globals, none of which run code:
//   torch._utils._rebuild_tensor_v2 / _rebuild_parameter(_with_state), torch.*Storage   → tensor
//   collections.OrderedDict → dict;  torch.device → str ("cuda:0");  _codecs.encode → bytes
//   torch.jit._pickle.restore_type_tag (LibTorch's type annotation of a container) → the container
//   numpy.dtype + numpy(._core|.core).multiarray.scalar → int / float / bool
// Any other global becomes an opaque placeholder that records its dotted name (and, when
// `strict` is set, the read fails naming it). torch::pickle_load was not used: it maps
// collections.OrderedDict to None (a state_dict is an OrderedDict) and cannot place numpy scalars,
// which nnU-Net checkpoints contain in 'logging' and '_best_ema'.
// Limits: little-endian files only; no legacy (pre-1.6 tar) format, no sparse, quantized or
// complex tensors.
#pragma once

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace umamba::model {

struct PyValue;
using PyValuePtr = std::shared_ptr<PyValue>;

struct PyValue {
  enum class Kind { None, Bool, Int, Float, Str, Bytes, List, Tuple, Dict, Tensor, Opaque };
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;                                        // Str, Bytes; Opaque: the global's name
  bool global = false;                                  // Opaque: the global itself (not a value
                                                        // it produced)
  std::vector<PyValuePtr> items;                        // List, Tuple; Opaque: its arguments
  std::vector<std::pair<PyValuePtr, PyValuePtr>> dict;  // Dict, in insertion order
  torch::Tensor tensor;                                 // Tensor (CPU)

  // Dict lookup by string key; null when absent or when this is not a dict.
  PyValuePtr get(const std::string& key) const;
};

struct TorchFileOptions {
  bool strict = false;  // fail on any global outside the allow-list instead of a placeholder
};

struct TorchFile {
  PyValuePtr root;
  std::vector<std::string> opaque_globals;  // distinct names of globals left unresolved
};

// Throws umamba::FileError naming the file and the problem (not a zip/torch file, unknown opcode,
// unsupported storage type, record missing or too short, big-endian, a disallowed global when
// strict).
TorchFile read_torch_file(const std::string& path, const TorchFileOptions& options = {});

// A dict of str → tensor (a state_dict); throws naming `what` when it is anything else.
std::map<std::string, torch::Tensor> tensor_dict(const PyValuePtr& value, const std::string& what);

// Writes `tensors` (name → tensor, in order) as Python's torch.save writes a dict of tensors:
// zip format, pickle protocol 2, torch._utils._rebuild_tensor_v2 per entry; entries that share a
// tensor share one storage record. Python reads it with torch.load(path, weights_only=True); so
// does read_torch_file (strict). CPU copies are written contiguous, little-endian.
void write_tensor_dict(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

// JSON view of a value for metadata (tensors as {"tensor": [shape], "dtype": ...}, opaque values
// as {"opaque": name}, bytes as their length).
nlohmann::json to_json(const PyValuePtr& value);

}  // namespace umamba::model
