# The exported package: find_package(asbi REQUIRED) then link asbi::sbi (or any lower layer).
include(CMakePackageConfigHelpers)

install(EXPORT asbiTargets NAMESPACE asbi:: DESTINATION lib/cmake/asbi)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/asbiConfig.cmake.in
  ${PROJECT_BINARY_DIR}/asbiConfig.cmake INSTALL_DESTINATION lib/cmake/asbi)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/asbiConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/asbiConfig.cmake ${PROJECT_BINARY_DIR}/asbiConfigVersion.cmake
  DESTINATION lib/cmake/asbi)
