// Behind mpiray/core/errors.h: the one mapping from a Status to an exception type.
#include "mpiray/core/errors.h"

namespace mpiray {

void ThrowIfError(const Status& st) {
  if (st.ok()) return;
  const std::string& m = st.message();
  switch (st.code()) {
    case StatusCode::kTaskError: throw TaskError(m);
    case StatusCode::kTimeout: throw GetTimeoutError(m);
    case StatusCode::kObjectStoreFull: throw ObjectStoreFullError(m);
    case StatusCode::kObjectLost: throw ObjectLostError(m);
    case StatusCode::kCancelled: throw TaskCancelledError(m);
    case StatusCode::kActorDied: throw ActorDiedError(m);
    // (Python: ActorUnavailableError; C++ has one class for an actor that cannot serve a call)
    case StatusCode::kActorUnavailable: throw ActorDiedError(m);
    case StatusCode::kWorkerCrashed: throw WorkerCrashedError(m);
    case StatusCode::kInfeasible: throw InfeasibleError(m);
    case StatusCode::kInvalidArgument: throw InvalidArgumentError(m);
    default: throw Error(st.code(), std::string(StatusCodeName(st.code())) + ": " + m);
  }
}

}  // namespace mpiray
