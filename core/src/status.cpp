// Behind mpiray/core/status.h: status code names.
#include "mpiray/core/status.h"

namespace mpiray {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kTimeout: return "Timeout";
    case StatusCode::kIoError: return "IoError";
    case StatusCode::kObjectStoreFull: return "ObjectStoreFull";
    case StatusCode::kObjectLost: return "ObjectLost";
    case StatusCode::kTaskError: return "TaskError";
    case StatusCode::kCancelled: return "TaskCancelled";
    case StatusCode::kActorDied: return "ActorDied";
    case StatusCode::kWorkerCrashed: return "WorkerCrashed";
    case StatusCode::kInfeasible: return "Infeasible";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kUnauthenticated: return "Unauthenticated";
    case StatusCode::kFabricError: return "FabricError";
    case StatusCode::kMpiError: return "MpiError";
    case StatusCode::kActorUnavailable: return "ActorUnavailable";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

}  // namespace mpiray
