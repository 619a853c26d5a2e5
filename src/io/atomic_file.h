// Outputs that appear only when complete: write under a temporary name in the target folder, then
// rename over the final name (rename(2) is atomic within one file system). A run stopped at any
// moment leaves either the old file, the new file, or a hidden temporary, never half a file under
// the final name.
#pragma once

#include <filesystem>

namespace umamba::io {

class AtomicOutput {
 public:
  // `overwrite` false: commit() refuses to replace an existing file at `final_path`.
  explicit AtomicOutput(std::filesystem::path final_path, bool overwrite = true);
  ~AtomicOutput();  // removes the temporary unless committed; never throws
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  // ".<name>.tmp-<pid>-<n>" beside the final file; the writer opens and fills it.
  const std::filesystem::path& temporary_path() const { return temporary_; }
  const std::filesystem::path& final_path() const { return final_; }

  // Renames the temporary over the final name. Throws Error (with both names) on failure.
  void commit();

 private:
  std::filesystem::path final_;
  std::filesystem::path temporary_;
  bool overwrite_;
  bool committed_ = false;
};

}  // namespace umamba::io
