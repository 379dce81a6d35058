// The default rendezvous of Group::Create (internal).
#pragma once

#include <memory>

#include "mpiray/collective/group.h"

namespace mpiray::collective::detail {

/// @brief Rendezvous through the job's named registry actor (C++).
std::unique_ptr<Rendezvous> MakeActorRendezvous();

}  // namespace mpiray::collective::detail
