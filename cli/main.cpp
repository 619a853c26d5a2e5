// umamba: U-Mamba segmentation for microscopy images and medical volumes.
//
// main parses the command line, sets logging and threads, runs one subcommand and turns every
// exception into one clean line on standard error and a non-zero exit status.
#include <tbb/global_control.h>

#include <cstdio>
#include <exception>
#include <memory>

#include "cli/commands.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"

int main(int argc, char** argv) {
  CLI::App app{
      "umamba: U-Mamba segmentation of cells in microscopy images and organs in medical volumes"};
  app.set_version_flag("--version", std::string("umamba ") + umamba::build_info::kVersion + " (" +
                                        umamba::build_info::kGitRevision + ")");
  app.require_subcommand(1);
  app.fallthrough();

  std::string log_level = "info";
  int threads = 0;
  app.add_option("--log-level", log_level, "Logging: trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->envname("UMAMBA_LOG_LEVEL");
  app.add_option("--threads", threads, "CPU threads for TBB (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_THREADS");

  umamba::cli::add_registered_commands(app);

  std::unique_ptr<tbb::global_control> thread_limit;
  app.parse_complete_callback([&] {
    umamba::log::init(log_level);
    if (threads > 0) {
      thread_limit = std::make_unique<tbb::global_control>(
          tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads));
    }
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "umamba: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
