# mpiray_lib_python_module(<target> <module name> <source> <library>): the pybind11 module of a
# library under libs/ (mpiray._hdf5, mpiray._kernels, mpiray._serve_proxy), built into the
# mpiray package of the build tree next to _core and installed beside it: into the wheel's
# mpiray/ under scikit-build (the library's .so goes next to it through mpiray_export), else
# into ${MPIRAY_PYTHON_INSTALL_DIR}/mpiray, finding the library three levels up.
function(mpiray_lib_python_module target module source library)
  set(PYBIND11_FINDPYTHON ON)
  find_package(Python COMPONENTS Interpreter Development.Module REQUIRED)
  find_package(pybind11 CONFIG REQUIRED)
  pybind11_add_module(${target} MODULE ${source})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME ${module}
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/python/mpiray
    INSTALL_RPATH "$ORIGIN"
    BUILD_WITH_INSTALL_RPATH OFF)
  target_link_libraries(${target} PRIVATE ${library})
  mpiray_warnings(${target})
  if(SKBUILD)
    install(TARGETS ${target} LIBRARY DESTINATION mpiray)
  else()
    set_target_properties(${target} PROPERTIES INSTALL_RPATH "$ORIGIN/../../..")
    install(TARGETS ${target} LIBRARY DESTINATION ${MPIRAY_PYTHON_INSTALL_DIR}/mpiray)
  endif()
endfunction()
