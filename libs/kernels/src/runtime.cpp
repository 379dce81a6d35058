#include "mpiray/kernels/runtime.h"

#include <mutex>

#ifdef MPIRAY_KERNELS_KOKKOS
#include <Kokkos_Core.hpp>
#endif

namespace mpiray::kernels {

bool UsesKokkos() {
#ifdef MPIRAY_KERNELS_KOKKOS
  return true;
#else
  return false;
#endif
}

std::string Backend() {
#ifdef MPIRAY_KERNELS_KOKKOS
  const int v = KOKKOS_VERSION;  // e.g. 30401
  std::string out = "Kokkos " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) +
                    "." + std::to_string(v % 100) + " " + Kokkos::DefaultExecutionSpace::name();
  if (!std::is_same_v<Kokkos::DefaultExecutionSpace, Kokkos::DefaultHostExecutionSpace>) {
    out += std::string(" (host: ") + Kokkos::DefaultHostExecutionSpace::name() + ")";
  }
  return out;
#else
  return "plain C++ (no Kokkos)";
#endif
}

void EnsureInitialized() {
#ifdef MPIRAY_KERNELS_KOKKOS
  if (Kokkos::is_initialized()) return;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (!Kokkos::is_initialized()) Kokkos::initialize();
#endif
}

}  // namespace mpiray::kernels
