// `umamba info`: the build, the libraries and the devices this binary sees; `umamba info FILE...`:
// what each image file holds (format, shape [C,Z,Y,X], dtype, spacing and unit, origin and
// direction, compression and layout) as read from its header, without decoding the pixels
// (PNG/JPEG/BMP excepted).
#include <fmt/core.h>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "io/image_info.h"
#include "io/image_io.h"
#include "pipeline/system_info.h"

namespace umamba::cli {

namespace {

void describe_files(const std::vector<std::string>& files, bool json) {
  nlohmann::json all = nlohmann::json::array();
  size_t failed = 0;
  for (const auto& file : files) {
    try {
      auto reader = io::open_image(file);
      const auto j = io::image_info_json(file, reader->info());
      if (json) {
        all.push_back(j);
      } else {
        fmt::print("{}", io::format_image_info(j));
      }
    } catch (const Error& e) {
      ++failed;
      log::error("{}", e.what());
      if (json) all.push_back({{"path", file}, {"error", e.what()}});
    }
  }
  if (json) fmt::print("{}\n", all.dump(2));
  if (failed > 0) fail("{} of {} files could not be read", failed, files.size());
}

void add_info_command(CLI::App& app) {
  struct Options {
    bool json = false;
    std::vector<std::string> files;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "info",
      "Show the build, LibTorch, CUDA devices, cuDNN, TBB and formats; with files, what each "
      "image holds (format, shape [C,Z,Y,X], dtype, spacing, origin/direction, compression)");
  cmd->add_flag("--json", opts->json, "Print the facts as JSON")->envname("UMAMBA_INFO_JSON");
  cmd->add_option("files", opts->files,
                  "Image files to describe (.tif/.tiff, .nii/.nii.gz, .png/.jpg/.bmp); none: "
                  "describe this build and machine")
      ->check(CLI::ExistingFile);
  cmd->callback([opts] {
    if (!opts->files.empty()) {
      describe_files(opts->files, opts->json);
      return;
    }
    const auto info = pipeline::system_info();
    if (opts->json) {
      fmt::print("{}\n", info.dump(2));
    } else {
      fmt::print("{}", pipeline::format_system_info(info));
    }
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(900, add_info_command);

}  // namespace umamba::cli
