// The subcommands of `umamba`. Each file cmd_<name>.cpp declares its flags once (with the default
// in the help and a UMAMBA_... environment-variable mirror) and calls into src/pipeline.
#pragma once

#include <CLI/CLI.hpp>

namespace umamba::cli {

void add_info_command(CLI::App& app);

}  // namespace umamba::cli
