// Dataset layouts and dataset.json; see dataset.h.
#include "plan/dataset.h"

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>

#include "core/error.h"
#include "io/json_file.h"

namespace umamba::plan {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<fs::path> sorted_files(const fs::path& folder) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

std::string nnunet_reader_for_ending(const std::string& file_ending) {
  const std::string e = lower(file_ending);
  if (e == ".png" || e == ".bmp" || e == ".tif" || e == ".tiff" || e == ".jpg" || e == ".jpeg")
    return e == ".tiff" ? "Tiff3DIO" : "NaturalImage2DIO";
  if (e == ".nii.gz" || e == ".nii" || e == ".nrrd" || e == ".mha" || e == ".gipl")
    return "SimpleITKIO";
  return "SimpleITKIO";
}

DatasetDescription parse_dataset_json(const nlohmann::ordered_json& j, const std::string& origin) {
  DatasetDescription d;
  d.dataset_json = j;
  if (!j.is_object()) throw FileError(origin, "dataset.json is not a JSON object");
  const char* channel_key = j.contains("channel_names") ? "channel_names" : "modality";
  if (!j.contains(channel_key) || !j[channel_key].is_object() || j[channel_key].empty()) {
    throw FileError(origin, "dataset.json has no \"channel_names\" (index -> name)");
  }
  std::map<int64_t, std::string> channels;
  for (const auto& [key, value] : j[channel_key].items()) {
    int64_t index = -1;
    try {
      index = std::stoll(key);
    } catch (...) {
    }
    if (index < 0 || !value.is_string()) {
      throw FileError(origin, "channel_names entry \"" + key + "\" must map an index to a name");
    }
    channels[index] = value.get<std::string>();
  }
  int64_t expected = 0;
  for (const auto& [index, name] : channels) {
    if (index != expected) {
      throw FileError(origin, "channel_names must number channels 0.." +
                                  std::to_string(channels.size() - 1) + ", got " +
                                  std::to_string(index));
    }
    d.channel_names.push_back(name);
    ++expected;
  }
  if (!j.contains("labels") || !j["labels"].is_object() || j["labels"].empty()) {
    throw FileError(origin, "dataset.json has no \"labels\" (name -> value, background 0)");
  }
  for (const auto& [name, value] : j["labels"].items()) {
    int64_t v = 0;
    if (value.is_number_integer()) {
      v = value.get<int64_t>();
    } else if (value.is_array() && !value.empty() && value[0].is_number_integer()) {
      v = value[0].get<int64_t>();  // region: counted as one output
    } else {
      throw FileError(origin, "label \"" + name + "\" must be an integer or a list of integers");
    }
    d.labels.emplace_back(name, v);
  }
  if (j.contains("numTraining")) {
    if (!j["numTraining"].is_number_integer() || j["numTraining"].get<int64_t>() < 1) {
      throw FileError(origin, "\"numTraining\" must be a positive integer");
    }
    d.num_training = j["numTraining"].get<int64_t>();
  }
  if (j.contains("file_ending")) {
    if (!j["file_ending"].is_string()) throw FileError(origin, "\"file_ending\" must be a string");
    d.file_ending = j["file_ending"].get<std::string>();
  }
  if (j.contains("overwrite_image_reader_writer") &&
      j["overwrite_image_reader_writer"].is_string() &&
      j["overwrite_image_reader_writer"].get<std::string>() != "None") {
    d.image_reader_writer = j["overwrite_image_reader_writer"].get<std::string>();
  } else {
    d.image_reader_writer = nnunet_reader_for_ending(d.file_ending);
  }
  return d;
}

namespace {

DatasetDescription discover_nnunet(const fs::path& folder) {
  DatasetDescription d = parse_dataset_json(io::read_ordered_json_file(folder / "dataset.json"),
                                            (folder / "dataset.json").string());
  d.name = folder.filename().string();
  d.layout = DatasetLayout::NnUNetRaw;
  const int64_t n_channel_files = static_cast<int64_t>(d.channel_names.size());
  if (d.dataset_json.contains("dataset")) {
    for (const auto& [id, entry] : d.dataset_json["dataset"].items()) {
      Case c;
      c.id = id;
      for (const auto& img : entry.at("images")) {
        fs::path p = img.get<std::string>();
        c.images.push_back(p.is_absolute() ? p : folder / p);
      }
      fs::path l = entry.at("label").get<std::string>();
      c.label = l.is_absolute() ? l : folder / l;
      d.cases.push_back(std::move(c));
    }
  } else {
    if (d.file_ending.empty()) {
      throw FileError((folder / "dataset.json").string(), "has no \"file_ending\"");
    }
    const fs::path images = folder / "imagesTr";
    const fs::path labels = folder / "labelsTr";
    if (!fs::is_directory(images)) throw FileError(images.string(), "is not a folder");
    if (!fs::is_directory(labels)) throw FileError(labels.string(), "is not a folder");
    // <case>_<XXXX><ending>
    std::map<std::string, std::map<int64_t, fs::path>> by_case;
    for (const auto& p : sorted_files(images)) {
      const std::string name = p.filename().string();
      if (!ends_with(name, d.file_ending)) continue;
      const std::string stem = name.substr(0, name.size() - d.file_ending.size());
      static const std::regex channel_suffix(R"((.*)_(\d{4}))");
      std::smatch m;
      if (!std::regex_match(stem, m, channel_suffix)) {
        throw FileError(p.string(), "is not named <case>_<XXXX>" + d.file_ending +
                                        " (XXXX = 4-digit channel index)");
      }
      by_case[m[1].str()][std::stoll(m[2].str())] = p;
    }
    for (auto& [id, files] : by_case) {
      Case c;
      c.id = id;
      for (const auto& [index, path] : files) c.images.push_back(path);
      c.label = labels / (id + d.file_ending);
      d.cases.push_back(std::move(c));
    }
    // Natural images hold their colour channels in one _0000 file; other formats one per channel.
    const bool natural = d.image_reader_writer == "NaturalImage2DIO";
    for (const auto& c : d.cases) {
      if (!natural && static_cast<int64_t>(c.images.size()) != n_channel_files) {
        throw FileError((images / c.id).string(), "case has " + std::to_string(c.images.size()) +
                                                      " channel files, dataset.json names " +
                                                      std::to_string(n_channel_files));
      }
    }
  }
  for (const auto& c : d.cases) {
    if (!fs::exists(c.label))
      throw FileError(c.label.string(), "label of case " + c.id + " is missing");
    for (const auto& p : c.images) {
      if (!fs::exists(p)) throw FileError(p.string(), "image of case " + c.id + " is missing");
    }
  }
  if (d.cases.empty()) throw FileError(folder.string(), "holds no training case");
  if (d.num_training == 0) d.num_training = static_cast<int64_t>(d.cases.size());
  return d;
}

DatasetDescription discover_neurips(const fs::path& folder) {
  DatasetDescription d;
  d.name = folder.filename().string();
  d.layout = DatasetLayout::NeurIPSCells;
  static const std::set<std::string> image_endings{".png",  ".bmp", ".jpg",
                                                   ".jpeg", ".tif", ".tiff"};
  static const std::vector<std::string> label_endings{".tiff", ".tif", ".png"};
  std::set<std::string> endings;
  for (const auto& p : sorted_files(folder / "images")) {
    const std::string ext = lower(p.extension().string());
    if (!image_endings.count(ext)) continue;
    Case c;
    c.id = p.stem().string();
    c.images.push_back(p);
    for (const auto& le : label_endings) {
      const fs::path l = folder / "labels" / (c.id + "_label" + le);
      if (fs::exists(l)) {
        c.label = l;
        break;
      }
    }
    if (c.label.empty()) {
      throw FileError(p.string(), "has no label labels/" + c.id + "_label.tiff");
    }
    endings.insert(ext);
    d.cases.push_back(std::move(c));
  }
  if (d.cases.empty()) throw FileError((folder / "images").string(), "holds no image");
  d.num_training = static_cast<int64_t>(d.cases.size());
  d.file_ending = endings.size() == 1 ? *endings.begin() : "";
  d.image_reader_writer = "NaturalImage2DIO";
  d.labels = {{"background", 0}, {"interior", 1}, {"boundary", 2}};
  // Channel names are set once the images' channel counts are known (fingerprint extraction).
  return d;
}

}  // namespace

DatasetDescription discover_dataset(const fs::path& folder) {
  if (!fs::is_directory(folder)) throw FileError(folder.string(), "is not a folder");
  if (fs::exists(folder / "dataset.json")) return discover_nnunet(folder);
  if (fs::is_directory(folder / "images") && fs::is_directory(folder / "labels")) {
    return discover_neurips(folder);
  }
  throw FileError(folder.string(),
                  "is neither an nnU-Net raw dataset (dataset.json, imagesTr/, labelsTr/) nor a "
                  "NeurIPS cell dataset (images/, labels/<name>_label.tiff)");
}

}  // namespace umamba::plan
