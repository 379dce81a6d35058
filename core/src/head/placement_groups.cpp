#include "head/placement_groups.h"

#include <algorithm>

#include "log.h"
#include "mpiray/core/serialization.h"

namespace mpiray::head {

using proto::Where;

namespace {

const char* PgStateName(uint8_t s) {
  static const char* names[] = {"PENDING", "CREATED", "REMOVED", "INFEASIBLE"};
  return s < 4 ? names[s] : "UNKNOWN";
}

}  // namespace

PlacementGroups::PlacementGroups(const RuntimeConfig& config, Scheduler& sched, ObjectDirectory& objects)
    : config_(config), sched_(sched), objects_(objects) {}

void PlacementGroups::Register(HeadRoutes& routes) {
  routes.On<proto::PlacementGroupSpec>(
      proto::Msg::kCreatePlacementGroup, [this](ProcId src, proto::PlacementGroupSpec&& spec) {
        const ObjectId ready = ObjectId::ForReturn(spec.id, 0);
        Status st = Create(std::move(spec), src);
        if (!st.ok()) {
          if (!objects_.Has(ready)) objects_.Create(ready).holders.assign(1, src);
          objects_.SetError(ready, st.code(), st.message());
        }
      });
}

bool PlacementGroups::Uses(uint32_t shape, const GroupRec& g) const {
  if (g.state == GroupRec::kRemoved || g.state == GroupRec::kInfeasible) return false;
  for (const auto& [i, amount] : sched_.ShapeRequest(shape)) {
    if (std::binary_search(g.indices.begin(), g.indices.end(), i)) return true;
  }
  return false;
}

bool PlacementGroups::AnyUses(uint32_t shape) const {
  for (const auto& [id, g] : groups_) {
    if (Uses(shape, *g)) return true;
  }
  return false;
}

Status PlacementGroups::BuildRequests(const proto::PlacementGroupSpec& spec, GroupRec* g) {
  auto& names = sched_.names();
  for (size_t i = 0; i < spec.bundles.size(); ++i) {
    ResourceRequest base, group;
    for (const auto& [name, amount] : spec.bundles[i]) {
      if (name.empty()) return InvalidArgument("resource names must not be empty");
      if (amount < 0) {
        return InvalidArgument("bundle " + std::to_string(i) + ": resource '" + name +
                               "' must be non-negative");
      }
      if (amount == 0) continue;
      base.emplace_back(static_cast<uint32_t>(names.Intern(name)), amount);
      for (int b : {static_cast<int>(i), -1}) {
        group.emplace_back(static_cast<uint32_t>(names.Intern(proto::PgResourceName(name, b, spec.id))),
                           amount);
      }
    }
    if (base.empty()) {
      return InvalidArgument("bundle " + std::to_string(i) +
                             " is empty: each bundle needs a positive amount of some resource");
    }
    for (int b : {static_cast<int>(i), -1}) {
      group.emplace_back(static_cast<uint32_t>(names.Intern(proto::PgResourceName("bundle", b, spec.id))),
                         proto::kPgBundleAmount);
    }
    std::sort(base.begin(), base.end());
    std::sort(group.begin(), group.end());
    for (const auto& [r, a] : group) g->indices.push_back(r);
    g->base.push_back(std::move(base));
    g->group.push_back(std::move(group));
  }
  std::sort(g->indices.begin(), g->indices.end());
  g->indices.erase(std::unique(g->indices.begin(), g->indices.end()), g->indices.end());
  g->nodes.assign(spec.bundles.size(), kNoNode);
  return Status::OK();
}

std::string PlacementGroups::InfeasibleMessage(const GroupRec& rec, TaskId id) const {
  const auto& names = sched_.names();
  std::string msg = "placement group " + (rec.spec.name.empty() ? id.ToString() : "'" + rec.spec.name + "'") +
                    " can never be placed: the cluster's nodes cannot hold its bundles with strategy " +
                    std::string(detail::PlacementStrategyName(rec.spec.strategy)) + " (";
  for (size_t i = 0; i < rec.base.size(); ++i) {
    msg += (i ? ", " : "") + DescribeRequest(names, rec.base[i]);
  }
  msg += "); the nodes have";
  for (const auto& n : sched_.Nodes()) {
    ResourceVector own = n.total;  // without other groups' bundle resources
    for (size_t i = 0; i < own.size(); ++i) {
      if (names.Name(i).find("_group_") != std::string::npos) own[i] = 0;
    }
    msg += " node " + std::to_string(n.node) + " " + DescribeVector(names, own) + ";";
  }
  return msg;
}

Status PlacementGroups::Create(proto::PlacementGroupSpec&& spec, ProcId submitter) {
  if (spec.bundles.empty()) return InvalidArgument("a placement group needs at least one bundle");
  if (spec.strategy > static_cast<uint8_t>(proto::PgStrategy::kStrictSpread)) {
    return InvalidArgument("unknown placement group strategy " + std::to_string(spec.strategy));
  }
  if (groups_.count(spec.id)) return Status(StatusCode::kAlreadyExists, "placement group exists");
  auto g = std::make_unique<GroupRec>();
  MPIRAY_RETURN_IF_ERROR(BuildRequests(spec, g.get()));
  const ObjectId ready = ObjectId::ForReturn(spec.id, 0);
  objects_.Create(ready).holders.assign(1, submitter);
  TaskId id = spec.id;
  g->spec = std::move(spec);
  GroupRec& rec = *g;
  groups_[id] = std::move(g);
  std::vector<NodeId> where;
  const auto strategy = static_cast<proto::PgStrategy>(rec.spec.strategy);
  if (!config_.autoscale && !sched_.PlaceBundles(rec.base, strategy, rec.nodes, true, &where)) {
    rec.state = GroupRec::kInfeasible;
    rec.error = InfeasibleMessage(rec, id);
    rec.ready_set = true;
    MPIRAY_LOG(warn, "{}", rec.error);
    objects_.SetError(ready, StatusCode::kInfeasible, rec.error);
    return Status::OK();
  }
  ++pending_;
  return Status::OK();
}

void PlacementGroups::PlacePending() {
  for (auto& [id, gp] : groups_) {
    GroupRec& g = *gp;
    if (g.state != GroupRec::kPending) continue;
    std::vector<NodeId> where;
    if (!sched_.PlaceBundles(g.base, static_cast<proto::PgStrategy>(g.spec.strategy), g.nodes,
                             false, &where)) {
      continue;  // all or nothing: wait for room
    }
    for (size_t i = 0; i < where.size(); ++i) {
      if (g.nodes[i] == kNoNode) sched_.ReserveBundle(where[i], g.base[i], g.group[i]);
    }
    g.nodes = std::move(where);
    g.state = GroupRec::kCreated;
    --pending_;
    if (!g.ready_set) {
      g.ready_set = true;
      proto::NewObject obj;
      obj.id = ObjectId::ForReturn(id, 0);
      obj.where = static_cast<uint8_t>(Where::kInline);
      obj.data = Buffer(detail::Serialize(true).ToVector());
      obj.size = obj.data.size();
      objects_.SetReady(obj.id, std::move(obj));
    }
  }
}

Result<GroupRec*> PlacementGroups::FindForRemoval(TaskId id) {
  auto it = groups_.find(id);
  if (it == groups_.end()) return InvalidArgument("unknown placement group " + id.ToString());
  return it->second.get();
}

void PlacementGroups::Remove(GroupRec& g) {
  if (g.state == GroupRec::kPending) --pending_;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i] != kNoNode) sched_.ReleaseBundle(g.nodes[i], g.base[i], g.group[i]);
  }
  g.state = GroupRec::kRemoved;
}

void PlacementGroups::FailIfUnready(TaskId id, GroupRec& g) {
  if (!g.ready_set) {
    g.ready_set = true;
    objects_.SetError(ObjectId::ForReturn(id, 0), StatusCode::kCancelled,
                      "placement group " + id.ToString() + " was removed before it was ready");
  }
}

void PlacementGroups::OnNodeRemoved(NodeId node) {
  for (auto& [gid, g] : groups_) {
    bool lost = false;
    for (NodeId& n : g->nodes) {
      if (n == node) {
        n = kNoNode;
        lost = true;
      }
    }
    if (lost && g->state == GroupRec::kCreated) {
      g->state = GroupRec::kPending;
      ++pending_;
      MPIRAY_LOG(warn, "placement group {} lost bundles with node {}; placing them again",
                 gid.ToString(), node);
    }
  }
}

std::vector<PlacementGroupInfo> PlacementGroups::Table() const {
  std::vector<PlacementGroupInfo> out;
  for (const auto& [id, g] : groups_) {
    PlacementGroupInfo info;
    info.id = id;
    info.name = g->spec.name;
    info.strategy = g->spec.strategy;
    info.state = PgStateName(g->state);
    info.error = g->error;
    for (const auto& b : g->spec.bundles) {
      std::map<std::string, double> m;
      for (const auto& [name, amount] : b) m[name] = static_cast<double>(amount) / proto::kResourceUnit;
      info.bundles.push_back(std::move(m));
    }
    info.nodes = g->nodes;
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace mpiray::head
