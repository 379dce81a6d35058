# Optional dependencies of the libraries in libs/ (see libs/README.md). Each MPIRAY_WITH_* option
# is ON by default where its dependency is found, so a plain configure builds everything this
# machine can; set one OFF to leave that part out, or ON to make a missing dependency an error.

# Kokkos (libs/kernels): Debian's libtrilinos-kokkos-dev (Serial) or Spack's kokkos (+openmp,
# +cuda, ...). Without it libs/kernels still builds, with plain C++ loops.
find_package(Kokkos CONFIG QUIET)
option(MPIRAY_WITH_KOKKOS "Build libs/kernels with Kokkos (portable Serial/OpenMP/CUDA kernels)"
       ${Kokkos_FOUND})
if(MPIRAY_WITH_KOKKOS)
  find_package(Kokkos CONFIG REQUIRED)
  # Debian's TriBITS-generated config points the imported target at /usr/lib/include; the
  # variable Kokkos_INCLUDE_DIRS is right (see HPC_STACK.md). Spack's native config is fine.
  if(Kokkos_INCLUDE_DIRS)
    get_target_property(_mpiray_kokkos_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _mpiray_kokkos_inc OR NOT EXISTS "${_mpiray_kokkos_inc}/Kokkos_Core.hpp")
      set_target_properties(Kokkos::kokkos PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${Kokkos_INCLUDE_DIRS}")
    endif()
  endif()
  message(STATUS "mpiray: Kokkos ${Kokkos_VERSION} (devices: ${Kokkos_DEVICES})")
endif()

# NCCL (libs/collective, GPU collectives): the backend declares the few NCCL and CUDA runtime
# entry points it calls and loads libnccl.so.2 and libcudart.so at run time (dlopen: the
# nvidia-nccl-cu12/-cu13 and CUDA runtime wheels that torch brings, or a system install), so
# building it needs neither a header nor the CUDA toolkit: ON by default everywhere.
option(MPIRAY_WITH_NCCL "Build the NCCL backend of libs/collective (loaded at run time)" ON)

# HDF5 (libs/hdf5): the OpenMPI build where there is one.
set(HDF5_PREFER_PARALLEL ON)
find_package(HDF5 QUIET COMPONENTS C)
option(MPIRAY_WITH_HDF5 "Build libs/hdf5 (HDF5 reading and writing for Data)" ${HDF5_FOUND})
