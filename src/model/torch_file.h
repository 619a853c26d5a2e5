// Reads files written by Python's torch.save (the zip format of PyTorch ≥ 1.6: `<name>/data.pkl`
// plus one record per storage) without Python and without executing anything.
//
// Method: a restricted unpickler (pickle protocols 2–5, the opcodes torch.save and numpy emit).
// It builds plain values — None, bool, int, float, str, bytes, list, tuple, dict, tensors — and
// accepts only globals on an allow-list, none of which is ever called (each is matched by name and
// its value built in C++). A global outside the list is refused the moment the pickle names it
// (GLOBAL, STACK_GLOBAL, INST), called or not, as torch.load(weights_only=True) does: a FileError
// names the file and the dotted global. Two lists:
//   strict (model folders' weights.pt, TorchFileOptions::strict): what the reader resolves —
//     torch._utils._rebuild_tensor_v2 / _rebuild_parameter(_with_state), torch.*Storage → tensor;
//     torch._tensor._rebuild_from_type_v2 with torch.Tensor / torch.nn.parameter.Parameter →
//     tensor; collections.OrderedDict → dict; torch.device → str ("cuda:0"); _codecs.encode →
//     bytes; torch.jit._pickle.restore_type_tag (LibTorch's type annotation of a container) → the
//     container; numpy.dtype + numpy(._core|.core).multiarray.scalar → int / float / bool.
//     Real nnU-Net v2 checkpoints (nnUNetTrainer.save_checkpoint) need nothing more.
//   lenient (the default; `umamba import` of nnU-Net checkpoints): the strict list plus a few inert
//     names that trainers of the nnU-Net family may add. Numpy arrays
//     (numpy(._core|.core).multiarray._reconstruct, numpy.ndarray) become placeholders that record
//     the name (TorchFile::opaque_globals); sets (builtins.set, builtins.frozenset, spelled
//     __builtin__.* by pickle protocol 2) become lists. An allowed global applied in a way the
//     reader does not resolve becomes such a placeholder too; when strict, it is refused.
// torch::pickle_load was not used: it maps collections.OrderedDict to None (a state_dict is an
// OrderedDict) and cannot place numpy scalars, which nnU-Net checkpoints contain in 'logging' and
// '_best_ema'.
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
  // The strict allow-list instead of the lenient one, and no placeholders: an allowed global
  // applied in a way the reader does not resolve is an error too.
  bool strict = false;
};

struct TorchFile {
  PyValuePtr root;
  std::vector<std::string> opaque_globals;  // distinct names of allowed globals left unresolved
};

// Throws umamba::FileError naming the file and the problem (not a zip/torch file, unknown opcode,
// unsupported storage type, record missing or too short, big-endian, a global outside the allow-
// list of the mode, an unresolved one when strict).
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
// as {"opaque": name}, bytes as their length). A shared container is copied per reference; past
// 250,000 values the view throws umamba::Error (shared references can expand exponentially).
nlohmann::json to_json(const PyValuePtr& value);

}  // namespace umamba::model
