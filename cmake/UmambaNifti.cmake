# Finds nifticlib (NIfTI-1/2 reading and writing) and defines the target NIfTI::niftiio.
#
# Debian's NIFTIConfig.cmake is unusable (it expects lib/ paths and nifti_tool binaries that the
# -dev package does not ship), so the header and the two libraries are located directly.
find_path(UMAMBA_NIFTI_INCLUDE_DIR nifti1_io.h PATH_SUFFIXES nifti REQUIRED)
find_library(UMAMBA_NIFTIIO_LIBRARY niftiio REQUIRED)
find_library(UMAMBA_ZNZ_LIBRARY znz REQUIRED)
if(NOT TARGET NIfTI::niftiio)
  add_library(NIfTI::znz UNKNOWN IMPORTED)
  set_target_properties(NIfTI::znz PROPERTIES
    IMPORTED_LOCATION "${UMAMBA_ZNZ_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${UMAMBA_NIFTI_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS HAVE_ZLIB
    INTERFACE_LINK_LIBRARIES ZLIB::ZLIB)
  add_library(NIfTI::niftiio UNKNOWN IMPORTED)
  set_target_properties(NIfTI::niftiio PROPERTIES
    IMPORTED_LOCATION "${UMAMBA_NIFTIIO_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${UMAMBA_NIFTI_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "NIfTI::znz;m")
endif()
message(STATUS "umamba: nifticlib ${UMAMBA_NIFTIIO_LIBRARY}")
