// Test doubles for the head's owners (core/src/head/*), each tested alone: a transport that
// records what is posted, listeners that record the events an owner announces, and helpers
// for peers, specs and objects.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fabric.h"
#include "head/gpu_allocator.h"
#include "head/lineage.h"
#include "head/membership.h"
#include "head/object_directory.h"
#include "head/placement_groups.h"
#include "head/task_table.h"
#include "mpiray/core/serialization.h"
#include "protocol.h"
#include "scheduler.h"
#include "session.h"

namespace headtest {

namespace proto = mpiray::proto;
using mpiray::Buffer;
using mpiray::NodeId;
using mpiray::ObjectId;
using mpiray::ProcId;
using mpiray::TaskId;

inline constexpr int64_t kUnit = proto::kResourceUnit;

struct Posted {
  ProcId dest;
  proto::Msg type;
  std::string body;
  template <class M>
  M As() const {
    return mpiray::DecodeMsg<M>(body.data(), body.size());
  }
};

/// Records every message posted (the owner under test never talks to a real fabric).
class RecordingTransport : public mpiray::Transport {
 public:
  ProcId self() const override { return 0; }
  void Post(ProcId dest, proto::Msg type, const char* body, size_t len) override {
    posted.push_back({dest, type, std::string(body, len)});
  }
  void SendBulk(ProcId, const proto::BulkHeader&, const void*, size_t, std::shared_ptr<const void>,
                std::function<void(bool)>) override {}
  void AddPeer(ProcId, const Buffer&) override {}
  void RemovePeer(ProcId) override {}
  void Wake() override {}

  std::vector<Posted> OfType(proto::Msg type) const {
    std::vector<Posted> out;
    for (const auto& p : posted) {
      if (p.type == type) out.push_back(p);
    }
    return out;
  }
  std::vector<Posted> posted;
};

/// Records what an object directory announces.
class RecordingObjectEvents : public mpiray::head::ObjectEvents {
 public:
  void OnDependencyReady(TaskId dependent) override {
    dependencies_ready.push_back(dependent);
    if (on_dependency) on_dependency(dependent);
  }
  void OnLineageReleased(TaskId task) override {
    lineage_released.push_back(task);
    if (on_lineage) on_lineage(task);
  }
  void OnActorHandlesGone(TaskId actor) override { actor_handles_gone.push_back(actor); }
  std::vector<TaskId> dependencies_ready;
  std::vector<TaskId> lineage_released;
  std::vector<TaskId> actor_handles_gone;
  /// Forwarded after recording (an owner above the directory, e.g. the task table).
  std::function<void(TaskId)> on_dependency;
  std::function<void(TaskId)> on_lineage;
};

inline proto::PeerInfo Peer(ProcId proc, NodeId node, const std::string& host = "") {
  proto::PeerInfo p;
  p.proc = proc;
  p.node = node;
  p.host = host.empty() ? "host" + std::to_string(node) : host;
  p.pid = 1000 + static_cast<int32_t>(proc);
  p.memory = 1ull << 30;
  return p;
}

inline proto::TaskSpec Task(uint64_t seq, const std::string& fn = "f", int max_retries = 0) {
  proto::TaskSpec s;
  s.id = TaskId::Make(0, seq);
  s.kind = static_cast<uint8_t>(proto::TaskKind::kNormal);
  s.function = fn;
  s.num_returns = 1;
  s.resources = {{"CPU", kUnit}};
  s.max_retries = max_retries;
  return s;
}

inline proto::Arg ByRef(const ObjectId& id) {
  proto::Arg a;
  a.by_ref = true;
  a.ref = id;
  return a;
}

template <class T>
Buffer Payload(const T& v) {
  return Buffer(mpiray::detail::Serialize(v).ToVector());
}

inline proto::NewObject Inline(const ObjectId& id, const Buffer& data) {
  proto::NewObject o;
  o.id = id;
  o.where = static_cast<uint8_t>(proto::Where::kInline);
  o.data = data;
  o.size = data.size();
  return o;
}

inline proto::NewObject InStore(const ObjectId& id, NodeId node, uint64_t size = 1 << 20) {
  proto::NewObject o;
  o.id = id;
  o.where = static_cast<uint8_t>(proto::Where::kShm);
  o.node = node;
  o.size = size;
  return o;
}

inline mpiray::Status ErrorOf(const proto::ObjectLoc& loc) {
  REQUIRE(loc.where == static_cast<uint8_t>(proto::Where::kError));
  return mpiray::detail::ErrorFromPayload(loc.data);
}

/// Records what a task table announces about actor creations.
class RecordingTaskEvents : public mpiray::head::TaskEvents {
 public:
  void OnCreationReady(TaskId actor) override { ready.push_back(actor); }
  void OnCreationFailed(TaskId actor, const std::string& why) override { failed.emplace_back(actor, why); }
  std::vector<TaskId> ready;
  std::vector<std::pair<TaskId, std::string>> failed;
};

/// The owners below the actor directory, wired as the HeadService wires them (the directory's
/// events go to the task table and the lineage), with processes 0 (head, node 0) and workers
/// 1..n on node 0.
struct TaskStack {
  explicit TaskStack(int workers, int max_inflight = 8) : sched(max_inflight) {
    members.Add(Peer(0, 0), false, 0);
    for (int i = 1; i <= workers; ++i) members.Add(Peer(static_cast<ProcId>(i), 0), true, 0);
    events.on_dependency = [this](TaskId task) { tasks.OnDependencyReady(task); };
    events.on_lineage = [this](TaskId task) { lineage.Release(task, true); };
    tasks.SetEvents(&task_events);
  }
  mpiray::head::TaskTable::Deps Deps() {
    mpiray::head::TaskTable::Deps d;
    d.transport = &t;
    d.config = &config;
    d.sched = &sched;
    d.objects = &objects;
    d.lineage = &lineage;
    d.groups = &groups;
    d.gpus = &gpus;
    d.members = &members;
    return d;
  }
  /// The kExecute messages sent so far, decoded.
  std::vector<std::pair<ProcId, proto::Execute>> Executes() const {
    std::vector<std::pair<ProcId, proto::Execute>> out;
    for (const auto& p : t.OfType(proto::Msg::kExecute)) out.emplace_back(p.dest, p.As<proto::Execute>());
    return out;
  }
  bool Ready(const ObjectId& id) const {
    const auto* e = objects.Find(id);
    return e && e->ready();
  }

  RecordingTransport t;
  mpiray::RuntimeConfig config;
  mpiray::Scheduler sched;
  mpiray::head::GpuAllocator gpus;
  mpiray::head::Membership members{t, config, sched, gpus, 0};
  RecordingObjectEvents events;
  mpiray::head::ObjectDirectory objects{t, members, events, [] { return int64_t{0}; }};
  mpiray::head::LineageTable lineage{objects};
  mpiray::head::PlacementGroups groups{config, sched, objects};
  mpiray::head::TaskTable tasks{Deps()};
  RecordingTaskEvents task_events;
};

/// Ids of the objects freed with kFreeObjects, to whom.
inline std::vector<std::pair<ProcId, ObjectId>> Freed(const RecordingTransport& t) {
  std::vector<std::pair<ProcId, ObjectId>> out;
  for (const auto& p : t.OfType(proto::Msg::kFreeObjects)) {
    for (const ObjectId& id : p.As<proto::IdList>().ids) out.emplace_back(p.dest, id);
  }
  return out;
}

}  // namespace headtest
