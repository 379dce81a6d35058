#include "head/membership.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "log.h"

namespace mpiray::head {

using proto::Msg;

Membership::Membership(Transport& transport, const RuntimeConfig& config, Scheduler& sched,
                       GpuAllocator& gpus, int64_t now_ms)
    : transport_(transport), config_(config), sched_(sched), gpus_(gpus), last_heartbeat_ms_(now_ms) {}

NodeId Membership::NodeOf(ProcId p) const {
  auto it = procs_.find(p);
  return it == procs_.end() ? kNoNode : it->second.peer.node;
}

bool Membership::IsAlive(ProcId p) const {
  auto it = procs_.find(p);
  return it != procs_.end() && it->second.alive;
}

const ProcInfo* Membership::Find(ProcId p) const {
  auto it = procs_.find(p);
  return it == procs_.end() ? nullptr : &it->second;
}

const std::vector<ProcId>& Membership::ProcsOnNode(NodeId node) { return node_procs_[node]; }

void Membership::UpdateNodeResources(NodeId node) {
  int workers = 0;
  int gpus = 0;
  uint64_t host_memory = 0;
  std::string host;
  std::vector<const proto::Resources*> own;  // the node's own (MPIRAY_NODE_RESOURCES)
  for (ProcId p : node_procs_[node]) {
    const ProcInfo& info = procs_[p];
    if (!info.alive) continue;
    if (!info.peer.resources.empty() && !info.peer.dedicated) own.push_back(&info.peer.resources);
    if (info.worker && !info.peer.dedicated) ++workers;
    gpus = std::max(gpus, info.peer.gpus);
    host_memory = std::max(host_memory, info.peer.memory);
    host = info.peer.host;
  }
  // Virtual nodes share their host's memory.
  std::set<NodeId> host_nodes;
  for (const auto& [id, info] : procs_) {
    if (info.alive && info.peer.host == host) host_nodes.insert(info.peer.node);
  }
  uint64_t memory = static_cast<uint64_t>(host_memory * 0.7) / std::max<size_t>(1, host_nodes.size());
  ResourceVector total(sched_.names().size(), 0);
  auto set = [&](const std::string& name, int64_t v) {
    size_t i = sched_.names().Intern(name);
    if (i >= total.size()) total.resize(i + 1, 0);
    total[i] = v;
  };
  set("CPU", config_.num_cpus >= 0 ? std::llround(config_.num_cpus * proto::kResourceUnit)
                                   : workers * proto::kResourceUnit);
  set("GPU", config_.num_gpus >= 0 ? std::llround(config_.num_gpus * proto::kResourceUnit)
                                   : gpus * proto::kResourceUnit);
  // As Ray: 70% of the memory available at start-up, in bytes.
  set("memory", static_cast<int64_t>(memory) * proto::kResourceUnit);
  for (const auto& [name, amount] : config_.custom) set(name, amount);
  // The node's own (MPIRAY_NODE_RESOURCES of its processes) replace the session's.
  for (const proto::Resources* r : own) {
    for (const auto& [name, amount] : *r) set(name, amount);
  }
  gpus_.SetDevices(node, static_cast<int>(total[1] / proto::kResourceUnit));  // devices 0..n-1
  // As Ray's "node:<ip>": lets a task ask for a particular node.
  set("node:" + std::to_string(node), proto::kResourceUnit);
  sched_.AddNode(node, total);
}

void Membership::Add(const proto::PeerInfo& peer, bool is_worker, int64_t now_ms) {
  ProcInfo& info = procs_[peer.proc];
  info.peer = peer;
  info.alive = true;
  info.worker = is_worker;
  info.last_seen_ms = now_ms;
  node_procs_[peer.node].push_back(peer.proc);
  if (is_worker) sched_.AddWorker(peer.proc, peer.node, peer.dedicated);
  // Every node of this host: memory is split among a host's (virtual) nodes.
  std::set<NodeId> host_nodes;
  for (const auto& [id, p] : procs_) {
    if (p.alive && p.peer.host == peer.host) host_nodes.insert(p.peer.node);
  }
  for (NodeId n : host_nodes) UpdateNodeResources(n);  // the head's node too (it has no CPUs)
}

std::optional<Departure> Membership::Remove(ProcId proc, const std::string& why, bool expected) {
  auto pit = procs_.find(proc);
  if (pit == procs_.end() || !pit->second.alive) return std::nullopt;
  ProcInfo& info = pit->second;
  info.alive = false;
  NodeId node = info.peer.node;
  if (expected) {
    MPIRAY_LOG(debug, "process {} (host {}, pid {}) left the cluster: {}", proc, info.peer.host,
               info.peer.pid, why);
  } else {
    MPIRAY_LOG(warn, "process {} (host {}, pid {}) left the cluster: {}", proc, info.peer.host,
               info.peer.pid, why);
  }
  // Everyone else stops talking to it (fetches from it fail at once instead of waiting).
  for (const auto& [id, p] : procs_) {
    if (p.alive && id != transport_.self()) SendMsg(transport_, id, Msg::kPeerLeft, proto::PeerLeft{proc});
  }
  auto& np = node_procs_[node];
  np.erase(std::remove(np.begin(), np.end(), proc), np.end());
  Departure d;
  d.peer = info.peer;
  d.worker = info.worker;
  d.node_gone = np.empty();
  if (d.node_gone) sched_.RemoveNode(node);  // a node whose processes are all gone is gone
  if (info.worker) {
    sched_.RemoveWorker(proc);
    if (!d.node_gone) UpdateNodeResources(node);
  }
  return d;
}

std::vector<std::pair<ProcId, int64_t>> Membership::Tick(int64_t now_ms) {
  if (now_ms - last_heartbeat_ms_ >= 1000) {
    last_heartbeat_ms_ = now_ms;
    for (const auto& [id, p] : procs_) {
      if (p.alive && id != transport_.self()) SendMsg(transport_, id, Msg::kHeartbeat, proto::Empty{});
    }
  }
  std::vector<std::pair<ProcId, int64_t>> silent;
  for (const auto& [id, p] : procs_) {
    if (p.alive && id != transport_.self() && now_ms - p.last_seen_ms > config_.heartbeat_timeout_ms) {
      silent.emplace_back(id, now_ms - p.last_seen_ms);
    }
  }
  return silent;
}

ProcId Membership::ProcOnNode(NodeId node) const {
  auto it = node_procs_.find(node);
  if (it == node_procs_.end()) return kNoProc;
  for (ProcId p : it->second) {
    auto pit = procs_.find(p);
    if (pit != procs_.end() && pit->second.alive) return p;
  }
  return kNoProc;
}

std::vector<proto::PeerInfo> Membership::Peers() const {
  std::vector<proto::PeerInfo> out;
  for (const auto& [id, p] : procs_) {
    if (p.alive) out.push_back(p.peer);
  }
  return out;
}

std::vector<ProcId> Membership::Workers() const {
  std::vector<ProcId> out;
  for (const auto& [id, p] : procs_) {
    if (p.alive && p.worker) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace mpiray::head
