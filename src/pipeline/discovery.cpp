// Input discovery (see discovery.h).
#include "pipeline/discovery.h"

#include <fnmatch.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "io/image_io.h"

namespace umamba::pipeline {

namespace fs = std::filesystem;

namespace {

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A stable identity for de-duplication and for recognising the output folder.
std::string identity(const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  if (ec) c = fs::absolute(p, ec).lexically_normal();
  return c.string();
}

class Collector {
 public:
  explicit Collector(const DiscoveryOptions& options)
      : options_(options),
        skip_dir_(options.skip_dir.empty() ? std::string() : identity(options.skip_dir)) {}

  // A file met inside a folder or through a glob: images only, outputs skipped.
  void add_found(const fs::path& path, const fs::path& relative) {
    if (!io::is_supported_image(path)) return;
    const std::string stem = split_image_name(path).first;
    for (const auto& suffix : options_.skip_stem_suffixes) {
      if (!suffix.empty() && ends_with(stem, suffix)) return;
    }
    add(path, relative);
  }

  void add(const fs::path& path, const fs::path& relative) {
    const std::string id = identity(path);
    if (!seen_.insert(id).second) return;
    const std::string rel = relative.lexically_normal().generic_string();
    auto [it, inserted] = by_relative_.emplace(rel, path);
    if (!inserted) {
      fail(
          "inputs {} and {} have the same relative path '{}', so their outputs would collide; "
          "give them in separate runs or with different output folders",
          it->second.string(), path.string(), rel);
    }
    files_.push_back({path, relative.lexically_normal()});
  }

  bool skip_folder(const fs::path& dir) const {
    return !skip_dir_.empty() && identity(dir) == skip_dir_;
  }

  void add_folder(const fs::path& dir) {
    std::error_code ec;
    if (options_.recursive) {
      fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec);
      if (ec) fail_file(dir.string(), "cannot be listed: {}", ec.message());
      for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) fail_file(dir.string(), "cannot be listed: {}", ec.message());
        const fs::path p = it->path();
        if (is_hidden(p)) {
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (it->is_directory(ec)) {
          if (skip_folder(p)) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec)) add_found(p, p.lexically_relative(dir));
      }
    } else {
      fs::directory_iterator it(dir, ec);
      if (ec) fail_file(dir.string(), "cannot be listed: {}", ec.message());
      for (const auto& entry : it) {
        if (is_hidden(entry.path())) continue;
        if (entry.is_regular_file(ec)) add_found(entry.path(), entry.path().filename());
      }
    }
  }

  // Expands components[i..] under `dir` (the glob's root is `root`).
  void expand(const fs::path& root, const fs::path& dir, const std::vector<std::string>& comps,
              size_t i) {
    std::error_code ec;
    const fs::path listing = dir.empty() ? fs::path(".") : dir;
    if (i == comps.size()) {
      if (fs::is_regular_file(listing, ec)) {
        add_found(dir, root.empty() ? dir : dir.lexically_relative(root));
      }
      return;
    }
    const std::string& comp = comps[i];
    if (comp == "**") {
      expand(root, dir, comps, i + 1);  // zero folders
      fs::directory_iterator it(listing, ec);
      if (ec) return;
      for (const auto& entry : it) {
        if (is_hidden(entry.path()) || !entry.is_directory(ec)) continue;
        const fs::path sub = dir / entry.path().filename();
        if (skip_folder(sub)) continue;
        expand(root, sub, comps, i);  // one more folder
      }
      return;
    }
    if (!has_wildcard(comp)) {
      const fs::path next = dir / comp;
      if (fs::exists(next, ec)) expand(root, next, comps, i + 1);
      return;
    }
    fs::directory_iterator it(listing, ec);
    if (ec) return;
    std::vector<fs::path> matches;
    for (const auto& entry : it) {
      const std::string name = entry.path().filename().string();
      if (!match_component(comp, name)) continue;
      matches.push_back(dir / name);
    }
    std::sort(matches.begin(), matches.end());
    for (const auto& m : matches) {
      if (i + 1 < comps.size() && (!fs::is_directory(m, ec) || skip_folder(m))) continue;
      expand(root, m, comps, i + 1);
    }
  }

  void add_glob(const std::string& pattern) {
    const fs::path p(pattern);
    fs::path root;
    std::vector<std::string> comps;
    bool wild = false;
    for (const auto& part : p) {
      const std::string s = part.string();
      if (!wild && !has_wildcard(s) && s != "**") {
        root /= part;
      } else {
        wild = true;
        if (!s.empty()) comps.push_back(s);
      }
    }
    // The last leading component may be the file itself only when there is no wildcard at all,
    // which the caller excludes; here the root is a folder.
    std::error_code ec;
    if (!root.empty() && !fs::is_directory(root, ec)) {
      fail("glob '{}': folder {} does not exist", pattern, root.string());
    }
    expand(root, root, comps, 0);
  }

  void add_input(const std::string& input, const fs::path& base) {
    if (input.empty()) return;
    fs::path p(input);
    if (!base.empty() && p.is_relative()) p = base / p;
    std::error_code ec;
    if (has_wildcard(input) && !fs::exists(p, ec)) {
      add_glob(p.string());
    } else if (fs::is_directory(p, ec)) {
      add_folder(p);
    } else {
      add(p, p.filename());
    }
  }

  std::vector<InputFile> take() {
    std::sort(files_.begin(), files_.end(), [](const InputFile& a, const InputFile& b) {
      const std::string ra = a.relative.generic_string(), rb = b.relative.generic_string();
      return ra != rb ? ra < rb : a.path.string() < b.path.string();
    });
    return std::move(files_);
  }

 private:
  const DiscoveryOptions& options_;
  std::string skip_dir_;
  std::set<std::string> seen_;
  std::map<std::string, fs::path> by_relative_;
  std::vector<InputFile> files_;
};

}  // namespace

bool has_wildcard(const std::string& text) {
  return text.find_first_of("*?[") != std::string::npos;
}

bool match_component(const std::string& pattern, const std::string& name) {
  // FNM_PERIOD: a leading '.' must be matched explicitly (hidden files only when asked for).
  return ::fnmatch(pattern.c_str(), name.c_str(), FNM_PERIOD) == 0;
}

std::pair<std::string, std::string> split_image_name(const fs::path& path) {
  const std::string name = path.filename().string();
  for (const char* double_ext : {".nii.gz", ".ome.tif", ".ome.tiff"}) {
    const std::string e = double_ext;
    if (name.size() > e.size()) {
      std::string tail = name.substr(name.size() - e.size());
      std::transform(tail.begin(), tail.end(), tail.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (tail == e)
        return {name.substr(0, name.size() - e.size()), name.substr(name.size() - e.size())};
    }
  }
  return {path.stem().string(), path.extension().string()};
}

std::vector<InputFile> discover_inputs(const std::vector<std::string>& inputs,
                                       const DiscoveryOptions& options) {
  Collector collector(options);
  for (const auto& input : inputs) collector.add_input(input, {});
  if (!options.list_file.empty()) {
    std::ifstream in(options.list_file);
    if (!in) fail_file(options.list_file.string(), "list file cannot be opened");
    const fs::path base = options.list_file.parent_path();
    std::string line;
    while (std::getline(in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
        line.pop_back();
      size_t start = line.find_first_not_of(" \t");
      if (start == std::string::npos || line[start] == '#') continue;
      collector.add_input(line.substr(start), base);
    }
    if (in.bad()) fail_file(options.list_file.string(), "list file cannot be read");
  }
  return collector.take();
}

}  // namespace umamba::pipeline
