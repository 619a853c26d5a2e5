// `umamba info`: the build, the libraries and the devices this binary sees.
#include <fmt/core.h>

#include <memory>

#include "cli/commands.h"
#include "pipeline/system_info.h"

namespace umamba::cli {

namespace {

void add_info_command(CLI::App& app) {
  struct Options {
    bool json = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd =
      app.add_subcommand("info", "Show the build, LibTorch, CUDA devices, cuDNN, TBB and formats");
  cmd->add_flag("--json", opts->json, "Print the facts as JSON")->envname("UMAMBA_INFO_JSON");
  cmd->callback([opts] {
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
