# Finds OpenCV's image codecs (PNG, JPEG, BMP) and defines umamba::opencv_imgcodecs.
#
# Debian's per-module packages (libopencv-imgcodecs-dev, a fraction of libopencv-dev's size) ship no
# OpenCVConfig.cmake, so a full OpenCV package is used when present and the libraries are located
# directly otherwise.
find_package(OpenCV QUIET COMPONENTS core imgcodecs)
add_library(umamba_opencv_imgcodecs INTERFACE)
add_library(umamba::opencv_imgcodecs ALIAS umamba_opencv_imgcodecs)
if(OpenCV_FOUND)
  target_include_directories(umamba_opencv_imgcodecs SYSTEM INTERFACE ${OpenCV_INCLUDE_DIRS})
  target_link_libraries(umamba_opencv_imgcodecs INTERFACE opencv_core opencv_imgcodecs)
  message(STATUS "umamba: OpenCV ${OpenCV_VERSION} (package)")
else()
  find_path(UMAMBA_OPENCV_INCLUDE_DIR opencv2/imgcodecs.hpp PATH_SUFFIXES opencv4)
  find_library(UMAMBA_OPENCV_CORE_LIBRARY opencv_core)
  find_library(UMAMBA_OPENCV_IMGCODECS_LIBRARY opencv_imgcodecs)
  if(NOT UMAMBA_OPENCV_INCLUDE_DIR OR NOT UMAMBA_OPENCV_CORE_LIBRARY OR NOT UMAMBA_OPENCV_IMGCODECS_LIBRARY)
    message(FATAL_ERROR "umamba: OpenCV imgcodecs not found. Install libopencv-imgcodecs-dev "
                        "(make deps does this) or configure with -DUMAMBA_OPENCV=OFF (TIFF and NIfTI only).")
  endif()
  target_include_directories(umamba_opencv_imgcodecs SYSTEM INTERFACE "${UMAMBA_OPENCV_INCLUDE_DIR}")
  target_link_libraries(umamba_opencv_imgcodecs INTERFACE
    "${UMAMBA_OPENCV_IMGCODECS_LIBRARY}" "${UMAMBA_OPENCV_CORE_LIBRARY}")
  message(STATUS "umamba: OpenCV imgcodecs ${UMAMBA_OPENCV_IMGCODECS_LIBRARY}")
endif()
