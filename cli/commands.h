// The subcommands of `umamba`. Each file cmd_<name>.cpp declares its flags once (with the default
// in the help and a UMAMBA_... environment-variable mirror), calls into src/pipeline, and registers
// itself with UMAMBA_REGISTER_COMMAND; cli/CMakeLists.txt picks up every cmd_*.cpp.
#pragma once

#include <CLI/CLI.hpp>

namespace umamba::cli {

using AddCommand = void (*)(CLI::App& app);

// Adds every registered subcommand to `app`, in the order of their `order` keys.
void add_registered_commands(CLI::App& app);

struct CommandRegistrar {
  // `order` sorts the commands in --help (lower first); `add` declares the subcommand on the app.
  CommandRegistrar(int order, AddCommand add);
};

}  // namespace umamba::cli

#define UMAMBA_REGISTER_COMMAND(order, add_function)                             \
  static const ::umamba::cli::CommandRegistrar umamba_registrar_##add_function { \
    order, add_function                                                          \
  }
