# What `cmake --install` gives C++ users (docs/cpp-api.md, "Using an installed mpiray"):
#   <prefix>/lib/cmake/mpiray/{mpirayConfig,mpirayConfigVersion,mpirayTargets}.cmake
#       find_package(mpiray) -> mpiray::mpiray (the runtime and the MPI launcher: what
#       applications link), mpiray::core, mpiray::mpi, mpiray::slurm, and every target that
#       calls mpiray_export() (libs/ adds itself this way)
#   <prefix>/lib/pkgconfig/mpiray.pc      for Makefiles: pkg-config --cflags --libs mpiray
#
# A component adds itself to the export set with
#
#   mpiray_export(<target> [EXPORT_NAME <name>] [HEADERS <include dir>...]
#                 [DEPENDENCIES <find_dependency arguments>...] [PKG_CONFIG <module>...])
#
#   EXPORT_NAME   the name after `mpiray::` (default: the target name without `mpiray_`)
#   HEADERS       include/ folders whose contents go to <prefix>/include
#   DEPENDENCIES  one string per package that mpirayConfig.cmake finds again before the
#                 targets are loaded, as find_dependency() arguments ("Kokkos",
#                 "HDF5 COMPONENTS C", "MPI COMPONENTS C")
#   PKG_CONFIG    pkg-config modules found again as IMPORTED_TARGET PkgConfig::<MODULE>
#                 (the prefix is the module name in capitals, e.g. libsodium -> LIBSODIUM)
#   CONFIG_CODE   CMake code run in mpirayConfig.cmake after the dependencies are found
#                 (fixes for broken imported targets, e.g. Kokkos 3.4's include path)
#
# Every library exported this way is also linked by mpiray.pc. mpiray_install_export(), called
# once at the end of the top-level CMakeLists.txt, writes the files.
#
# Under pip (SKBUILD) there are no headers or CMake files: a library exported this way is
# installed into the package directory, next to the extension that loads it ($ORIGIN).
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MPIRAY_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/mpiray"
    CACHE STRING "where mpirayConfig.cmake is installed (relative to the prefix)")
set(_MPIRAY_EXPORT_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(mpiray_export target)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "EXPORT_NAME;CONFIG_CODE" "HEADERS;DEPENDENCIES;PKG_CONFIG")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "mpiray_export(${target}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_EXPORT_NAME)
    string(REGEX REPLACE "^mpiray_" "" ARG_EXPORT_NAME "${target}")
  endif()
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${ARG_EXPORT_NAME})
  get_target_property(type ${target} TYPE)
  if(SKBUILD)
    if(type STREQUAL "SHARED_LIBRARY")
      install(TARGETS ${target} LIBRARY DESTINATION mpiray)
    endif()
    return()
  endif()
  install(TARGETS ${target} EXPORT mpirayTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  foreach(dir IN LISTS ARG_HEADERS)
    install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endforeach()
  set_property(GLOBAL APPEND PROPERTY MPIRAY_EXPORT_DEPENDENCIES ${ARG_DEPENDENCIES})
  set_property(GLOBAL APPEND PROPERTY MPIRAY_EXPORT_PKG_CONFIG ${ARG_PKG_CONFIG})
  if(ARG_CONFIG_CODE)
    # One string per call, kept whole even if the code contains semicolons.
    get_property(code GLOBAL PROPERTY MPIRAY_EXPORT_CONFIG_CODE)
    set_property(GLOBAL PROPERTY MPIRAY_EXPORT_CONFIG_CODE "${code}${ARG_CONFIG_CODE}\n")
  endif()
  if(type MATCHES "^(SHARED|STATIC)_LIBRARY$")
    set_property(GLOBAL APPEND PROPERTY MPIRAY_EXPORT_LIBRARIES ${target})
  endif()
endfunction()

function(mpiray_install_export)
  if(SKBUILD)
    return()
  endif()
  get_property(deps GLOBAL PROPERTY MPIRAY_EXPORT_DEPENDENCIES)
  get_property(pkgs GLOBAL PROPERTY MPIRAY_EXPORT_PKG_CONFIG)
  get_property(code GLOBAL PROPERTY MPIRAY_EXPORT_CONFIG_CODE)
  get_property(libs GLOBAL PROPERTY MPIRAY_EXPORT_LIBRARIES)
  list(REMOVE_DUPLICATES deps)
  list(REMOVE_DUPLICATES pkgs)

  set(MPIRAY_FIND_DEPENDENCIES "")
  foreach(dep IN LISTS deps)
    string(APPEND MPIRAY_FIND_DEPENDENCIES "find_dependency(${dep})\n")
  endforeach()
  if(pkgs)
    string(APPEND MPIRAY_FIND_DEPENDENCIES "find_dependency(PkgConfig)\n")
    foreach(pkg IN LISTS pkgs)
      string(TOUPPER "${pkg}" prefix)
      string(MAKE_C_IDENTIFIER "${prefix}" prefix)
      string(APPEND MPIRAY_FIND_DEPENDENCIES
             "_mpiray_pkg_config(${prefix} ${pkg})\n")
    endforeach()
  endif()
  set(MPIRAY_CONFIG_CODE "${code}")

  configure_package_config_file(${_MPIRAY_EXPORT_DIR}/mpirayConfig.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/mpirayConfig.cmake
    INSTALL_DESTINATION ${MPIRAY_INSTALL_CMAKEDIR})
  # 0.x: a new minor version may change the API, so only the same minor version matches.
  write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mpirayConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
  install(EXPORT mpirayTargets NAMESPACE mpiray:: DESTINATION ${MPIRAY_INSTALL_CMAKEDIR})
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mpirayConfig.cmake
                ${CMAKE_CURRENT_BINARY_DIR}/mpirayConfigVersion.cmake
          DESTINATION ${MPIRAY_INSTALL_CMAKEDIR})

  # mpiray.pc: every exported library, the ones registered last (which may use the earlier
  # ones) first. The prefix is found from the file's own place, so a moved prefix still works.
  list(REVERSE libs)
  set(MPIRAY_PC_LIBS "")
  foreach(lib IN LISTS libs)
    get_target_property(name ${lib} OUTPUT_NAME)
    if(NOT name)
      set(name ${lib})
    endif()
    string(APPEND MPIRAY_PC_LIBS " -l${name}")
  endforeach()
  file(RELATIVE_PATH MPIRAY_PC_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
  string(REGEX REPLACE "/$" "" MPIRAY_PC_PREFIX "\${pcfiledir}/${MPIRAY_PC_PREFIX}")
  configure_file(${_MPIRAY_EXPORT_DIR}/mpiray.pc.in ${CMAKE_CURRENT_BINARY_DIR}/mpiray.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mpiray.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()
