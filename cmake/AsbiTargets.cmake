# Helpers shared by the per-folder CMakeLists: warnings, optimisation flags, library layout.

function(asbi_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${ASBI_WERROR}>>:-Werror>
    # GCC 12 reports false maybe-uninitialized warnings inside Eigen's AVX-512 GEMM kernels.
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>)
endfunction()

# asbi_add_library(<layer> DEPS <targets...>): the library asbi_<layer>, alias asbi::<layer>, from
# every source under the folder of the same name. Headers are included as "<layer>/file.hpp" in
# the source tree and as <asbi/<layer>/file.hpp> (or "<layer>/file.hpp") once installed.
function(asbi_add_library layer)
  cmake_parse_arguments(ARG "" "" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${layer}/*.cpp)
  # <layer>/cli/ holds a program built on the library, not part of it.
  list(FILTER sources EXCLUDE REGEX "/${layer}/cli/")
  if(NOT sources)
    # A layer whose code is still to come: a header-only target, so dependents link it already.
    add_library(asbi_${layer} INTERFACE)
    set_target_properties(asbi_${layer} PROPERTIES EXPORT_NAME ${layer})
    target_include_directories(asbi_${layer} INTERFACE
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> $<INSTALL_INTERFACE:include/asbi>
      $<INSTALL_INTERFACE:include>)
    target_link_libraries(asbi_${layer} INTERFACE ${ARG_DEPS})
    add_library(asbi::${layer} ALIAS asbi_${layer})
    install(TARGETS asbi_${layer} EXPORT asbiTargets)
    return()
  endif()
  add_library(asbi_${layer} STATIC ${sources})
  add_library(asbi::${layer} ALIAS asbi_${layer})
  set_target_properties(asbi_${layer} PROPERTIES EXPORT_NAME ${layer} OUTPUT_NAME asbi_${layer})
  target_include_directories(asbi_${layer} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:include/asbi>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(asbi_${layer} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_features(asbi_${layer} PUBLIC cxx_std_20)
  asbi_set_warnings(asbi_${layer})
  if(ASBI_NATIVE)
    target_compile_options(asbi_${layer} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  endif()
  install(TARGETS asbi_${layer} EXPORT asbiTargets ARCHIVE DESTINATION lib)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${layer}/ DESTINATION include/asbi/${layer}
          FILES_MATCHING PATTERN "*.hpp")
endfunction()

# Finds nvcc and decides whether the CUDA backend is built (sets ASBI_WITH_CUDA).
macro(asbi_find_cuda)
  set(ASBI_WITH_CUDA OFF)
  if(NOT ASBI_CUDA STREQUAL "OFF")
    include(CheckLanguage)
    if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
      set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
    endif()
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      enable_language(CUDA)
      find_package(CUDAToolkit REQUIRED)
      set(ASBI_WITH_CUDA ON)
    elseif(ASBI_CUDA STREQUAL "ON")
      message(FATAL_ERROR "ASBI_CUDA=ON but no CUDA compiler (nvcc) was found")
    endif()
  endif()
  message(STATUS "asbi: CUDA backend ${ASBI_WITH_CUDA}")
endmacro()
