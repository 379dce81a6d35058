#include "registry.h"

namespace mpiray::collective::detail {

bool Registry::Incarnation::Complete(int round) const {
  auto it = rounds.find(round);
  return it != rounds.end() && static_cast<int>(it->second.size()) == world_size;
}

Result<uint64_t> Registry::Join(const std::string& name, int world_size, int rank, const std::string& blob) {
  auto cur = current_.find(name);
  uint64_t id = 0;
  if (cur != current_.end()) {
    auto it = incarnations_.find(cur->second);
    if (it != incarnations_.end() && !it->second.Complete(0)) id = cur->second;
  }
  if (id == 0) {
    id = next_++;
    Incarnation inc;
    inc.name = name;
    inc.world_size = world_size;
    incarnations_[id] = std::move(inc);
    current_[name] = id;
  }
  Incarnation& inc = incarnations_[id];
  if (inc.world_size != world_size) {
    std::string ranks;
    for (const auto& [r, b] : inc.rounds[0]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    return Status(StatusCode::kInvalidArgument,
                  "collective group '" + name + "': rank " + std::to_string(rank) + " joins with world_size " +
                      std::to_string(world_size) + ", but rank(s) " + ranks + " joined with world_size " +
                      std::to_string(inc.world_size));
  }
  if (inc.rounds[0].count(rank)) {
    return Status(StatusCode::kInvalidArgument, "collective group '" + name + "': rank " + std::to_string(rank) +
                                                    " joined twice (two members with the same rank?)");
  }
  inc.rounds[0][rank] = blob;
  return id;
}

Status Registry::Publish(uint64_t incarnation, int rank, int round, const std::string& blob) {
  auto it = incarnations_.find(incarnation);
  if (it == incarnations_.end()) return Status(StatusCode::kNotFound, "collective rendezvous: unknown group incarnation");
  it->second.rounds[round][rank] = blob;
  return Status::OK();
}

Result<std::vector<std::string>> Registry::Collect(uint64_t incarnation, int round, std::vector<int>* joined) const {
  auto it = incarnations_.find(incarnation);
  if (it == incarnations_.end()) return Status(StatusCode::kNotFound, "collective rendezvous: unknown group incarnation");
  const Incarnation& inc = it->second;
  std::vector<std::string> out;
  auto r = inc.rounds.find(round);
  if (joined) {
    joined->clear();
    if (r != inc.rounds.end()) {
      for (const auto& [rank, b] : r->second) joined->push_back(rank);
    }
  }
  if (!inc.Complete(round)) return out;
  for (const auto& [rank, b] : r->second) out.push_back(b);
  return out;
}

void Registry::Leave(uint64_t incarnation, int rank) {
  auto it = incarnations_.find(incarnation);
  if (it == incarnations_.end()) return;
  it->second.left.insert(rank);
  if (static_cast<int>(it->second.left.size()) >= it->second.world_size) {
    auto cur = current_.find(it->second.name);
    if (cur != current_.end() && cur->second == incarnation) current_.erase(cur);
    incarnations_.erase(it);
  }
}

}  // namespace mpiray::collective::detail
