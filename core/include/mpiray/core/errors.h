// Exceptions raised by the public C++ API. Inside the runtime errors are Status values; the
// single mapping from a Status to an exception type is ThrowIfError().
#pragma once

#include <stdexcept>
#include <string>

#include "mpiray/core/status.h"

namespace mpiray {

/// @brief Base of every mpiray exception (Ray: RayError).
class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  /// @brief The runtime error category this exception came from.
  StatusCode code() const { return code_; }

 private:
  StatusCode code_;
};

#define MPIRAY_DECLARE_ERROR(Name, Code) \
  class Name : public Error {            \
   public:                               \
    explicit Name(const std::string& what) : Error(StatusCode::Code, what) {} \
  };

/// A task or actor method threw; the message carries the remote exception and where it ran.
MPIRAY_DECLARE_ERROR(TaskError, kTaskError)
/// Get/Wait did not finish within the timeout.
MPIRAY_DECLARE_ERROR(GetTimeoutError, kTimeout)
/// The node's object store cannot hold the object.
MPIRAY_DECLARE_ERROR(ObjectStoreFullError, kObjectStoreFull)
/// The object is gone (freed, never existed, or its node died).
MPIRAY_DECLARE_ERROR(ObjectLostError, kObjectLost)
/// The task was cancelled before it finished.
MPIRAY_DECLARE_ERROR(TaskCancelledError, kCancelled)
/// The actor is dead (killed, or its worker died, or its constructor threw).
MPIRAY_DECLARE_ERROR(ActorDiedError, kActorDied)
/// The worker running the task died and retries are exhausted.
MPIRAY_DECLARE_ERROR(WorkerCrashedError, kWorkerCrashed)
/// No node in the cluster can ever satisfy the resource request.
MPIRAY_DECLARE_ERROR(InfeasibleError, kInfeasible)
/// Bad input to an API call (unknown option, negative resource, unregistered function...).
MPIRAY_DECLARE_ERROR(InvalidArgumentError, kInvalidArgument)
#undef MPIRAY_DECLARE_ERROR

/// @brief Throw the exception type that corresponds to `status`; no-op when OK.
void ThrowIfError(const Status& status);

/// @brief Unwrap a Result at the API boundary, throwing on error.
template <class T>
T ValueOrThrow(Result<T> r) {
  ThrowIfError(r.status());
  return std::move(r).value();
}

}  // namespace mpiray
