// mpiray::Init: start the runtime the way the program was launched.
#pragma once

#include "mpiray/core/options.h"

namespace mpiray {

/// @brief Start mpiray. Under mpirun/srun, rank 0 returns (it is the head and runs the
/// program) and every other rank becomes a worker that never returns (it exits 0 when the
/// head shuts down). Without a launcher, this process becomes the head and starts local worker
/// processes. Throws mpiray::Error with the cause when start-up is impossible.
void Init(const InitOptions& options = {});

}  // namespace mpiray
