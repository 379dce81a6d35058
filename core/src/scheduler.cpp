#include "scheduler.h"

#include <algorithm>
#include <tuple>

namespace mpiray {

Scheduler::Scheduler(int max_inflight_per_worker)
    : max_inflight_(std::max(1, max_inflight_per_worker)) {}

Result<uint32_t> Scheduler::Shape(const proto::Resources& request) {
  ResourceRequest r;
  for (const auto& [name, amount] : request) {
    if (name.empty()) return InvalidArgument("resource names must not be empty");
    if (amount < 0) {
      return InvalidArgument("resource '" + name + "' must be non-negative");
    }
    if (amount == 0) continue;
    r.emplace_back(static_cast<uint32_t>(names_.Intern(name)), amount);
  }
  std::sort(r.begin(), r.end());
  for (size_t i = 1; i < r.size(); ++i) {
    if (r[i].first == r[i - 1].first) {
      return InvalidArgument("resource '" + names_.Name(r[i].first) + "' given twice");
    }
  }
  auto it = shape_ids_.find(r);
  if (it != shape_ids_.end()) return it->second;
  auto id = static_cast<uint32_t>(shapes_.size());
  ResourceRequest cpu, rest;
  for (const auto& e : r) {
    const std::string& name = names_.Name(e.first);
    (name == "CPU" || name.rfind("CPU_group_", 0) == 0 ? cpu : rest).push_back(e);
  }
  cpu_parts_.push_back(std::move(cpu));
  rest_parts_.push_back(std::move(rest));
  shapes_.push_back(r);
  shape_ids_.emplace(std::move(r), id);
  queues_.emplace_back();
  avg_us_.push_back(-1);
  return id;
}

void Scheduler::AddNode(NodeId node, const ResourceVector& total) {
  // Adding to a known node changes its totals but keeps what is in use.
  Node& n = nodes_[node];
  n.id = node;
  size_t len = std::max({total.size(), n.total.size(), n.avail.size(), n.extra.size()});
  n.total.resize(len, 0);
  n.avail.resize(len, 0);
  n.extra.resize(len, 0);
  for (size_t i = 0; i < len; ++i) {
    int64_t t = (i < total.size() ? total[i] : 0) + n.extra[i];
    n.avail[i] += t - n.total[i];
    n.total[i] = t;
  }
}

void Scheduler::AddWorker(ProcId worker, NodeId node, bool dedicated) {
  Worker& w = workers_[worker];
  w.id = worker;
  w.node = node;
  w.alive = true;
  w.dedicated = dedicated;
  nodes_[node].workers.push_back(worker);
  ++alive_workers_;
  if (expected_workers_ > 0) --expected_workers_;
}

void Scheduler::RemoveWorker(ProcId worker) {
  // The head owns the worker's items and re-queues or fails them; we release what it held.
  auto it = workers_.find(worker);
  if (it == workers_.end()) return;
  Worker& w = it->second;
  auto nit = nodes_.find(w.node);
  if (nit != nodes_.end()) {
    if (w.lease_count > 0) Release(nit->second, shapes_[w.lease_shape]);
    for (size_t i = 0; i < w.held.size(); ++i) {  // its items' own holds
      if (i >= nit->second.avail.size()) nit->second.avail.resize(i + 1, 0);
      nit->second.avail[i] += w.held[i];
    }
    auto& ws = nit->second.workers;
    ws.erase(std::remove(ws.begin(), ws.end(), worker), ws.end());
  }
  if (w.alive) --alive_workers_;
  if (w.actors > 0) gone_actor_hosts_[worker] = {w.node, w.actors};
  workers_.erase(it);
}

void Scheduler::RemoveNode(NodeId node) { nodes_.erase(node); }

bool Scheduler::Fits(const Node& n, const ResourceRequest& r) const {
  for (const auto& [i, amount] : r) {
    int64_t have = i < n.avail.size() ? n.avail[i] : 0;
    if (have < amount) return false;
  }
  return true;
}

void Scheduler::Acquire(Node& n, const ResourceRequest& r) {
  for (const auto& [i, amount] : r) {
    if (i >= n.avail.size()) n.avail.resize(i + 1, 0);
    n.avail[i] -= amount;
  }
}

void Scheduler::Release(Node& n, const ResourceRequest& r) {
  for (const auto& [i, amount] : r) {
    if (i >= n.avail.size()) n.avail.resize(i + 1, 0);
    n.avail[i] += amount;
  }
}

void Scheduler::Held(Worker& w, const ResourceRequest& r, int sign) {
  for (const auto& [i, amount] : r) {
    if (i >= w.held.size()) w.held.resize(i + 1, 0);
    w.held[i] += sign * amount;
  }
}

Status Scheduler::CheckFeasible(uint32_t shape) const {
  const ResourceRequest& r = shapes_[shape];
  for (const auto& [id, n] : nodes_) {
    if (n.workers.empty() && expected_workers_ == 0) continue;
    bool ok = true;
    for (const auto& [i, amount] : r) {
      int64_t have = i < n.total.size() ? n.total[i] : 0;
      if (have < amount) ok = false;
    }
    if (ok) return Status::OK();
  }
  std::string msg = "no node can ever satisfy the resource request " +
                    DescribeRequest(names_, r) + "; the cluster's nodes have";
  bool first = true;
  for (const auto& [id, n] : nodes_) {
    msg += (first ? " " : ", ") + std::string("node ") + std::to_string(id) + " " +
           DescribeVector(names_, n.total);
    first = false;
  }
  if (nodes_.empty()) msg += " no workers";
  return Status(StatusCode::kInfeasible, msg);
}

void Scheduler::Enqueue(SchedItem* item) {
  item->queued = true;
  item->worker = kNoProc;
  item->seq = ++next_seq_;
  queues_[item->shape].emplace_back(item->seq, item);
  ++queued_;
}

bool Scheduler::Dequeue(SchedItem* item) {
  if (!item->queued) return false;
  item->queued = false;  // its entry is dropped lazily (the item may be freed before)
  dropped_.insert(item->seq);
  --queued_;
  return true;
}

Scheduler::Worker* Scheduler::FindOnNode(Node& n, uint32_t shape, int limit, bool idle_only) {
  Worker* best = nullptr;
  const ResourceRequest& req = shapes_[shape];
  bool node_fits = Fits(n, req);
  for (ProcId wid : n.workers) {
    Worker& w = workers_[wid];
    if (!w.alive || w.draining || w.dedicated) continue;
    int active = w.inflight - w.blocked;
    if (idle_only) {
      if (w.lease_count == 0 && active == 0 && node_fits) {
        if (!best || w.inflight < best->inflight) best = &w;
      }
    } else if (w.lease_count > 0 && w.lease_shape == shape && active < limit) {
      if (!best || active < best->inflight - best->blocked) best = &w;
    }
  }
  return best;
}

Scheduler::Worker* Scheduler::FindWorker(uint32_t shape, NodeId preferred, int limit) {
  if (preferred == kSpreadNode) {
    // Round-robin: the first node from the cursor with an idle worker that fits.
    auto start = nodes_.lower_bound(spread_next_);
    for (int pass = 0; pass < 2; ++pass) {
      auto it = pass == 0 ? start : nodes_.begin();
      auto end = pass == 0 ? nodes_.end() : start;
      for (; it != end; ++it) {
        if (Worker* w = FindOnNode(it->second, shape, limit, true)) {
          spread_next_ = it->first + 1;
          return w;
        }
      }
    }
    preferred = kNoNode;
  }
  if (preferred != kNoNode) {
    auto it = nodes_.find(preferred);
    if (it != nodes_.end()) {
      if (Worker* w = FindOnNode(it->second, shape, limit, true)) return w;
      if (Worker* w = FindOnNode(it->second, shape, limit, false)) return w;
    }
  }
  for (bool idle : {true, false}) {
    Worker* best = nullptr;
    for (auto& [id, n] : nodes_) {
      Worker* w = FindOnNode(n, shape, limit, idle);
      if (w && (!best || (w->inflight - w->blocked) < (best->inflight - best->blocked))) best = w;
    }
    if (best) return best;
  }
  return nullptr;
}

void Scheduler::Assign(SchedItem* item, Worker& w) {
  if (w.lease_count == 0) {
    Acquire(nodes_[w.node], shapes_[item->shape]);
    w.lease_shape = item->shape;
  }
  ++w.lease_count;
  ++w.inflight;
  item->worker = w.id;
  item->queued = false;
  item->blocked = false;
  item->private_hold = false;
  item->holds_rest = false;
}

void Scheduler::Schedule(std::vector<Assignment>* out) {
  if (queued_ == 0 || alive_workers_ == 0) return;
  for (uint32_t s = 0; s < queues_.size(); ++s) {
    auto& q = queues_[s];
    while (!q.empty()) {
      auto [seq, item] = q.front();
      if (dropped_.erase(seq) > 0) {  // dequeued while queued: `item` may be gone
        q.pop_front();
        continue;
      }
      // Pipeline no deeper than the fair share of the backlog, so short queues spread out, and
      // no deeper than the shape's task durations warrant.
      int limit = static_cast<int>(std::min<size_t>(
          Depth(s), std::max<size_t>(1, (queued_ + alive_workers_ - 1) / alive_workers_)));
      Worker* w = FindWorker(s, item->spread ? kSpreadNode : item->preferred, limit);
      if (w == nullptr) break;
      q.pop_front();
      --queued_;
      Assign(item, *w);
      out->emplace_back(item, w->id);
    }
  }
}

void Scheduler::Finished(SchedItem* item) {
  auto it = workers_.find(item->worker);
  item->worker = kNoProc;
  if (it == workers_.end()) return;
  Worker& w = it->second;
  auto& node = nodes_[w.node];
  --w.inflight;
  if (item->blocked) {
    --w.blocked;
    if (item->holds_rest) {
      Release(node, rest_parts_[item->shape]);
      Held(w, rest_parts_[item->shape], -1);
    }
  } else if (item->private_hold) {
    Release(node, shapes_[item->shape]);
    Held(w, shapes_[item->shape], -1);
  } else if (--w.lease_count == 0) {
    Release(node, shapes_[w.lease_shape]);
  }
  item->blocked = false;
  item->private_hold = false;
  item->holds_rest = false;
}

void Scheduler::Blocked(SchedItem* item) {
  auto it = workers_.find(item->worker);
  if (it == workers_.end() || item->blocked) return;
  Worker& w = it->second;
  auto& node = nodes_[w.node];
  const uint32_t s = item->shape;
  item->holds_rest = false;
  if (item->private_hold) {  // lends its CPUs; the rest stays in w.held
    Release(node, cpu_parts_[s]);
    Held(w, cpu_parts_[s], -1);
    item->private_hold = false;
    item->holds_rest = true;
  } else if (--w.lease_count == 0) {
    // The last one riding the lease (of its own shape): the CPUs go back, the rest becomes its
    // own hold. While others ride it, the lease keeps a whole copy and nothing is lent.
    Release(node, cpu_parts_[w.lease_shape]);
    Held(w, rest_parts_[w.lease_shape], +1);
    item->holds_rest = true;
  }
  item->blocked = true;
  ++w.blocked;
}

void Scheduler::Unblocked(SchedItem* item) {
  auto it = workers_.find(item->worker);
  if (it == workers_.end() || !item->blocked) return;
  Worker& w = it->second;
  auto& node = nodes_[w.node];
  const uint32_t s = item->shape;
  item->blocked = false;
  --w.blocked;
  // What it must take again: its CPUs when it kept the rest, else its whole shape.
  const ResourceRequest& missing = item->holds_rest ? cpu_parts_[s] : shapes_[s];
  if (w.lease_count > 0 && w.lease_shape == s) {
    ++w.lease_count;  // the lease holds a whole copy: what it kept goes back
    if (item->holds_rest) {
      Release(node, rest_parts_[s]);
      Held(w, rest_parts_[s], -1);
    }
  } else if (w.lease_count == 0) {
    Acquire(node, missing);  // may oversubscribe briefly, as Ray does
    if (item->holds_rest) Held(w, rest_parts_[s], -1);  // (now part of the lease)
    w.lease_shape = s;
    w.lease_count = 1;
  } else {
    Acquire(node, missing);
    Held(w, missing, +1);  // with what it kept: its whole shape, held privately
    item->private_hold = true;
  }
  item->holds_rest = false;
}

namespace {

bool FitsIn(const ResourceVector& have, const ResourceRequest& r) {
  for (const auto& [i, amount] : r) {
    if ((i < have.size() ? have[i] : 0) < amount) return false;
  }
  return true;
}

void Take(ResourceVector& have, const ResourceRequest& r) {
  for (const auto& [i, amount] : r) {
    if (i >= have.size()) have.resize(i + 1, 0);
    have[i] -= amount;
  }
}

}  // namespace

bool Scheduler::PlaceBundles(const std::vector<ResourceRequest>& bundles,
                             proto::PgStrategy strategy, const std::vector<NodeId>& placed,
                             bool use_totals, std::vector<NodeId>* out) const {
  using S = proto::PgStrategy;
  std::map<NodeId, ResourceVector> room;  // what is left on each usable node
  for (const auto& [id, n] : nodes_) {
    bool usable = false;
    for (ProcId w : n.workers) {
      auto it = workers_.find(w);
      usable = usable || (it != workers_.end() && it->second.alive && !it->second.draining);
    }
    if (usable) room[id] = use_totals ? n.total : n.avail;
  }
  std::map<NodeId, int> used;  // bundles of this group on each node
  for (NodeId node : placed) {
    if (node != kNoNode) ++used[node];
  }
  out->assign(bundles.size(), kNoNode);
  for (size_t i = 0; i < bundles.size(); ++i) {
    if (i < placed.size() && placed[i] != kNoNode) (*out)[i] = placed[i];
  }
  if (strategy == S::kStrictPack) {
    // Every bundle on the node already holding some, or on one node that takes them all.
    ResourceRequest sum;
    std::map<uint32_t, int64_t> total;
    for (size_t i = 0; i < bundles.size(); ++i) {
      if ((*out)[i] != kNoNode) continue;
      for (const auto& [r, a] : bundles[i]) total[r] += a;
    }
    for (const auto& [r, a] : total) sum.emplace_back(r, a);
    NodeId fixed = used.empty() ? kNoNode : used.begin()->first;
    for (const auto& [id, have] : room) {
      if ((fixed == kNoNode || id == fixed) && FitsIn(have, sum)) {
        for (NodeId& n : *out) n = id;
        return true;
      }
    }
    return false;
  }
  for (size_t i = 0; i < bundles.size(); ++i) {
    if ((*out)[i] != kNoNode) continue;
    NodeId best = kNoNode;
    auto better = [&](NodeId id) {
      if (best == kNoNode) return true;
      int u = used[id], bu = used[best];
      if (strategy == S::kPack) return u > bu;  // join the group's busiest node
      return u < bu;                            // SPREAD: the emptiest
    };
    for (const auto& [id, have] : room) {
      if (!FitsIn(have, bundles[i])) continue;
      if (strategy == S::kStrictSpread && used[id] > 0) continue;
      if (better(id)) best = id;
    }
    if (best == kNoNode) return false;
    Take(room[best], bundles[i]);
    ++used[best];
    (*out)[i] = best;
  }
  return true;
}

void Scheduler::ReserveBundle(NodeId node, const ResourceRequest& base,
                              const ResourceRequest& group) {
  Node& n = nodes_[node];
  Acquire(n, base);
  for (const auto& [i, amount] : group) {
    size_t len = std::max<size_t>(i + 1, n.total.size());
    n.total.resize(len, 0);
    n.avail.resize(len, 0);
    n.extra.resize(len, 0);
    n.total[i] += amount;
    n.avail[i] += amount;
    n.extra[i] += amount;
  }
}

void Scheduler::ReleaseBundle(NodeId node, const ResourceRequest& base,
                              const ResourceRequest& group) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  Node& n = it->second;
  Release(n, base);
  for (const auto& [i, amount] : group) {
    if (i >= n.total.size()) continue;
    n.total[i] -= amount;
    n.avail[i] -= amount;
    n.extra[i] -= amount;
  }
}

ProcId Scheduler::PlaceActor(uint32_t shape, bool hold, NodeId preferred, bool spread,
                             bool dedicated, NodeId* start_on) {
  const ResourceRequest& req = shapes_[shape];
  Worker* best = nullptr;
  // Smaller is better: (not the preferred node, actors on the node when spreading, actors on
  // the worker, calls in flight on it).
  using Key = std::tuple<bool, int, int, int>;
  Key best_key{};
  // dedicated: the best node that fits, whether or not it has an idle dedicated worker.
  const Node* best_node = nullptr;
  std::pair<bool, int> best_node_key{};
  for (auto& [nid, n] : nodes_) {
    if (hold && !Fits(n, req)) continue;
    int node_actors = 0;
    if (spread) {
      for (ProcId wid : n.workers) node_actors += workers_[wid].actors;
    }
    std::pair<bool, int> node_key{preferred != kNoNode && nid != preferred, node_actors};
    if (dedicated && !n.workers.empty() && (!best_node || node_key < best_node_key)) {
      best_node = &n;
      best_node_key = node_key;
    }
    for (ProcId wid : n.workers) {
      Worker& w = workers_[wid];
      if (!w.alive || w.draining || w.dedicated != dedicated) continue;
      if (dedicated && w.actors > 0) continue;
      Key key{node_key.first, node_actors, w.actors, w.inflight};
      if (!best || key < best_key) {
        best = &w;
        best_key = key;
      }
    }
  }
  if (best && dedicated && best->node != best_node->id &&
      best_node_key < std::make_pair(std::get<0>(best_key), std::get<1>(best_key))) {
    best = nullptr;  // a better node has room but no idle process yet: start one there
  }
  if (!best) {
    if (start_on) *start_on = best_node ? best_node->id : kNoNode;
    if (best_node && hold) Acquire(nodes_[best_node->id], req);  // reserved for it
    return kNoProc;
  }
  ++best->actors;
  if (hold) Acquire(nodes_[best->node], req);
  return best->id;
}

ProcId Scheduler::TakeDedicated(NodeId node) {
  auto nit = nodes_.find(node);
  if (nit == nodes_.end()) return kNoProc;
  for (ProcId wid : nit->second.workers) {
    Worker& w = workers_[wid];
    if (w.alive && !w.draining && w.dedicated && w.actors == 0) {
      ++w.actors;
      return w.id;
    }
  }
  return kNoProc;
}

void Scheduler::ReleaseReserved(NodeId node, uint32_t shape, bool held) {
  auto nit = nodes_.find(node);
  if (held && nit != nodes_.end()) Release(nit->second, shapes_[shape]);
}

void Scheduler::ReleaseActor(ProcId worker, uint32_t shape, bool held) {
  NodeId node;
  if (auto it = workers_.find(worker); it != workers_.end()) {
    --it->second.actors;
    node = it->second.node;
    // A process started for one actor serves that actor only: it is on its way out.
    if (it->second.dedicated) it->second.draining = true;
  } else if (auto g = gone_actor_hosts_.find(worker); g != gone_actor_hosts_.end()) {
    // Its process died after placing actors: their resources go back to its node (if the node
    // is still there; a removed node's resources went with it).
    node = g->second.first;
    if (--g->second.second <= 0) gone_actor_hosts_.erase(g);
  } else {
    return;
  }
  auto nit = nodes_.find(node);
  if (held && nit != nodes_.end()) Release(nit->second, shapes_[shape]);
}

void Scheduler::RecordDuration(uint32_t shape, int64_t us) {
  if (shape >= avg_us_.size() || us < 0) return;
  double& a = avg_us_[shape];
  a = a < 0 ? static_cast<double>(us) : 0.8 * a + 0.2 * static_cast<double>(us);
}

int Scheduler::Depth(uint32_t shape) const {
  double a = shape < avg_us_.size() ? avg_us_[shape] : -1;
  if (a < 0) return std::min(2, max_inflight_);  // nothing measured yet: hide one round trip
  constexpr double kQueuedWorkUs = 2000;
  int d = 1 + static_cast<int>(kQueuedWorkUs / std::max(1.0, a));
  return std::clamp(d, 1, max_inflight_);
}

size_t Scheduler::Pipelined() const {
  size_t n = 0;
  for (const auto& [id, w] : workers_) n += static_cast<size_t>(std::max(0, w.inflight - w.blocked - 1));
  return n;
}

void Scheduler::SetDraining(ProcId worker, bool draining) {
  auto it = workers_.find(worker);
  if (it != workers_.end()) it->second.draining = draining;
}

std::pair<int, int> Scheduler::Load(ProcId worker) const {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return {0, 0};
  return {it->second.inflight, it->second.actors};
}

std::vector<Scheduler::NodeView> Scheduler::Nodes() const {
  std::vector<NodeView> out;
  for (const auto& [id, n] : nodes_) {
    NodeView v{id, n.total, n.avail, n.workers};
    v.total.resize(names_.size(), 0);
    v.available.resize(names_.size(), 0);
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace mpiray
