// Where the nccl backend looks for libnccl.so.2 and libcudart.so (internal; the Python binding
// passes the nvidia-* wheels' lib directories).
#pragma once

#include <string>
#include <vector>

namespace mpiray::collective::detail {

/// @brief Directories searched (in order) before the dynamic linker's path.
void SetNcclSearchPaths(const std::vector<std::string>& dirs);

}  // namespace mpiray::collective::detail
