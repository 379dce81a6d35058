// How the kernels run: Kokkos (and which backend) or plain C++, and Kokkos' initialisation.
#pragma once

#include <string>

namespace mpiray::kernels {

/// @brief True when this build runs the kernels through Kokkos (MPIRAY_WITH_KOKKOS).
bool UsesKokkos();

/// @brief What runs the kernels, e.g. "Kokkos 3.4.1 Serial" or "Kokkos 4.3.0 Cuda (host:
/// OpenMP)" or "plain C++ (no Kokkos)".
std::string Backend();

/// @brief Initialise Kokkos if nobody has (idempotent, thread-safe). Every kernel entry point
/// calls it, so programs need not; a program that uses Kokkos itself initialises it first
/// (Kokkos::initialize or Kokkos::ScopeGuard before its first mpiray::kernels call, and before
/// mpiray::Init so that worker ranks have it too). Kokkos initialised here is not finalised:
/// the process exit reclaims it. No-op without Kokkos.
void EnsureInitialized();

}  // namespace mpiray::kernels
