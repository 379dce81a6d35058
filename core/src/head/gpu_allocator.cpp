#include "head/gpu_allocator.h"

#include <algorithm>

#include "protocol.h"

namespace mpiray::head {

namespace {
constexpr uint32_t kGpuIndex = 1;  // ResourceNames interns CPU, GPU, memory first
}  // namespace

void GpuAllocator::SetDevices(NodeId node, int count) { devices_[node] = count; }

int64_t GpuAllocator::Amount(const ResourceRequest& request) {
  for (const auto& [i, amount] : request) {
    if (i == kGpuIndex) return amount;
  }
  return 0;
}

std::vector<int32_t> GpuAllocator::Assign(NodeId node, int64_t amount) {
  const int64_t unit = proto::kResourceUnit;
  auto gi = devices_.find(node);
  const int count = gi == devices_.end() ? 0 : gi->second;
  std::vector<int64_t>& used = used_[node];
  used.resize(static_cast<size_t>(std::max(count, 0)), 0);
  std::vector<int32_t> ids;
  if (used.empty()) return ids;
  const int64_t per = amount >= unit ? unit : amount;
  const size_t want = amount >= unit ? static_cast<size_t>((amount + unit - 1) / unit) : 1;
  for (size_t k = 0; k < want && ids.size() < used.size(); ++k) {
    int best = -1;
    for (size_t d = 0; d < used.size(); ++d) {
      if (std::find(ids.begin(), ids.end(), static_cast<int32_t>(d)) != ids.end()) continue;
      bool fits = used[d] + per <= unit;
      if (best < 0) {
        best = static_cast<int>(d);
        continue;
      }
      bool best_fits = used[static_cast<size_t>(best)] + per <= unit;
      if (fits != best_fits) {
        if (fits) best = static_cast<int>(d);
      } else if (per < unit ? used[d] > used[static_cast<size_t>(best)]
                            : used[d] < used[static_cast<size_t>(best)]) {
        best = static_cast<int>(d);
      }
    }
    used[static_cast<size_t>(best)] += per;
    ids.push_back(best);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

const std::vector<int32_t>& GpuAllocator::Grant(Holder holder, TaskId id, NodeId node,
                                                int64_t amount) {
  Release(holder, id);  // a restart or a retry gets fresh ones
  Held& g = grants_[static_cast<int>(holder)][id];
  g.node = node;
  g.amount = amount;
  g.ids = Assign(node, amount);
  return g.ids;
}

void GpuAllocator::Release(Holder holder, TaskId id) {
  auto& grants = grants_[static_cast<int>(holder)];
  if (grants.empty()) return;
  auto it = grants.find(id);
  if (it == grants.end()) return;
  const int64_t unit = proto::kResourceUnit;
  const int64_t per = it->second.amount >= unit ? unit : it->second.amount;
  auto u = used_.find(it->second.node);
  if (u != used_.end()) {
    for (int32_t d : it->second.ids) {
      if (static_cast<size_t>(d) < u->second.size()) u->second[static_cast<size_t>(d)] -= per;
    }
  }
  grants.erase(it);
}

}  // namespace mpiray::head
