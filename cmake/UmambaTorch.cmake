# Finds LibTorch and defines umamba::torch.
#
# Where it comes from, in order: an explicit Torch_DIR (an unpacked LibTorch archive or any install,
# e.g. -DTorch_DIR=/opt/libtorch/share/cmake/Torch), else the torch wheel in the project's .venv
# (make deps installs torch==2.11.0 there), else whatever CMAKE_PREFIX_PATH already holds.
if(NOT Torch_DIR AND EXISTS "${UMAMBA_PYTHON}")
  execute_process(
    COMMAND "${UMAMBA_PYTHON}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE UMAMBA_TORCH_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE UMAMBA_TORCH_QUERY ERROR_QUIET)
  if(UMAMBA_TORCH_QUERY EQUAL 0 AND UMAMBA_TORCH_PREFIX)
    list(APPEND CMAKE_PREFIX_PATH "${UMAMBA_TORCH_PREFIX}")
  endif()
endif()
if(NOT Python_EXECUTABLE AND EXISTS "${UMAMBA_PYTHON}")
  set(Python_EXECUTABLE "${UMAMBA_PYTHON}")  # LibTorch's CUDA setup shells out to Python
endif()
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  message(FATAL_ERROR "umamba: LibTorch not found. Run `make deps` (installs torch==2.11.0 into .venv), "
                      "pass -DTorch_DIR=<libtorch>/share/cmake/Torch, or configure with -DUMAMBA_TORCH=OFF.")
endif()
add_library(umamba_torch INTERFACE)
add_library(umamba::torch ALIAS umamba_torch)
target_link_libraries(umamba_torch INTERFACE ${TORCH_LIBRARIES})
# LibTorch's include folder carries its own fmt (12.x), which shadows Debian's fmt (9.x) in every
# translation unit that sees it. Those units use it header-only, so nothing links against the wrong
# libfmt; they must not include spdlog (core/log.h is the facade they use instead).
target_compile_definitions(umamba_torch INTERFACE FMT_HEADER_ONLY)
# LibTorch's headers are not ours to warn about.
get_target_property(UMAMBA_TORCH_INCLUDES torch INTERFACE_INCLUDE_DIRECTORIES)
if(UMAMBA_TORCH_INCLUDES)
  target_include_directories(umamba_torch SYSTEM INTERFACE ${UMAMBA_TORCH_INCLUDES})
endif()
message(STATUS "umamba: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
