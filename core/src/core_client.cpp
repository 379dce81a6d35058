// Behind mpiray/core/detail/core_client.h: what a CoreClient without a runtime answers.
#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/errors.h"

namespace mpiray {
namespace detail {

ClusterSnapshot CoreClient::Snapshot() {
  throw Error(StatusCode::kInvalidArgument, "cluster information is not available here");
}
Status CoreClient::DrainProcesses(const std::vector<ProcId>&) {
  return InvalidArgument("draining is only possible on the driver");
}
bool CoreClient::GetNamedActor(const std::string&, const std::string&, ActorId*, Buffer*) {
  throw Error(StatusCode::kInvalidArgument, "named actors are not available here");
}
ObjectId CoreClient::CreatePlacementGroup(const std::string&, uint8_t,
                                          const std::vector<std::vector<std::pair<std::string, double>>>&,
                                          TaskId*) {
  throw Error(StatusCode::kInvalidArgument, "placement groups are not available here");
}
void CoreClient::RemovePlacementGroup(TaskId) {
  throw Error(StatusCode::kInvalidArgument, "placement groups are not available here");
}
std::vector<PlacementGroupEntry> CoreClient::PlacementGroups() {
  throw Error(StatusCode::kInvalidArgument, "placement groups are not available here");
}
int CoreClient::StreamNext(TaskId, uint32_t, int64_t, bool) {
  throw Error(StatusCode::kInvalidArgument, "streaming tasks are not available here");
}
void CoreClient::StreamRelease(TaskId, uint32_t, uint32_t) {}
void CoreClient::InterruptWaits(uint64_t, bool) {}
std::vector<uint8_t> CoreClient::ListState(size_t) {
  throw Error(StatusCode::kInvalidArgument, "the job's state is not available here");
}
double CoreClient::MeasureFabricGbps(ProcId, uint64_t) {
  throw Error(StatusCode::kInvalidArgument, "fabric measurement is not available here");
}

}  // namespace detail
}  // namespace mpiray
