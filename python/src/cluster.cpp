// mpiray._core: what the running job looks like (runtime context, cluster snapshot, the state
// listing) and placement groups.
#include "binding.h"

namespace mpiray_py {

namespace {

// The per-call keys of `c` (what CallContext gives) into `d`.
void PutCallKeys(const detail::RuntimeContext& c, py::dict& d) {
  d["task_id"] = c.task.nil() ? py::object(py::none()) : py::object(py::str(c.task.ToString()));
  d["actor_id"] = c.actor.nil() ? py::object(py::none()) : py::object(py::bytes(reinterpret_cast<const char*>(&c.actor.value), 8));
  d["incarnation"] = c.incarnation;
  d["max_retries"] = c.max_retries;
  py::list gpus;
  for (int32_t g : c.gpu_ids) gpus.append(g);
  d["gpu_ids"] = gpus;
}

}  // namespace

py::dict CallContext() {
  py::dict d;
  PutCallKeys(detail::CurrentContext(), d);
  return d;
}

py::dict Context() {
  detail::RuntimeContext c = detail::CurrentContext();
  py::dict d;
  d["job_id"] = c.job_id;
  d["session_dir"] = c.session_dir;
  d["rank"] = c.proc;
  d["node"] = c.node;
  d["driver"] = c.driver;
  d["namespace"] = c.ns;
  PutCallKeys(c, d);
  return d;
}

namespace {

py::dict Snapshot() {
  detail::ClusterSnapshot s;
  {
    py::gil_scoped_release release;
    s = detail::Client()->Snapshot();
  }
  py::dict d;
  py::list nodes;
  for (const auto& n : s.nodes) {
    py::dict nd;
    nd["id"] = n.id;
    py::dict total, avail;
    for (const auto& [k, v] : n.total) total[py::str(k)] = v;
    for (const auto& [k, v] : n.available) avail[py::str(k)] = v;
    nd["total"] = total;
    nd["available"] = avail;
    nd["workers"] = n.workers;
    nodes.append(nd);
  }
  d["nodes"] = nodes;
  py::list procs;
  for (const auto& p : s.processes) {
    py::dict pd;
    pd["rank"] = p.proc;
    pd["node"] = p.node;
    pd["pid"] = p.pid;
    pd["host"] = p.host;
    procs.append(pd);
  }
  d["processes"] = procs;
  d["objects"] = s.objects;
  d["queued_tasks"] = s.queued_tasks;
  d["running_tasks"] = s.running_tasks;
  d["actors"] = s.actors;
  d["store_used"] = s.store_used;
  d["actor_restarts"] = s.actor_restarts;
  d["reconstructions"] = s.reconstructions;
  d["lineage_tasks"] = s.lineage_tasks;
  return d;
}

}  // namespace

// The runtime context, the cluster's snapshot, placement groups and the job's state listing.
void BindCluster(py::module_& m) {
  m.def("context", &Context);
  m.def("current_task_id", []() -> py::object {  // per task, so without building a context
    mpiray::TaskId t = detail::CurrentTaskId();
    return t.nil() ? py::object(py::none()) : py::object(py::str(t.ToString()));
  });
  m.def("snapshot", &Snapshot);
  m.def("create_placement_group", [](const std::string& name, int strategy, py::list bundles) {
    std::vector<std::vector<std::pair<std::string, double>>> b;
    for (auto bundle : bundles) {
      std::vector<std::pair<std::string, double>> one;
      for (auto kv : bundle.cast<py::dict>()) {
        one.emplace_back(kv.first.cast<std::string>(), kv.second.cast<double>());
      }
      b.push_back(std::move(one));
    }
    mpiray::TaskId id;
    ObjectId ready;
    {
      py::gil_scoped_release release;
      ready = detail::Client()->CreatePlacementGroup(name, static_cast<uint8_t>(strategy), b, &id);
    }
    return py::make_tuple(py::bytes(reinterpret_cast<const char*>(&id.value), 8), AdoptRef(ready));
  });
  m.def("list_state", [](size_t limit) {
    std::vector<uint8_t> bytes = detail::Client()->ListState(limit);
    return DeserializePy(Buffer(std::move(bytes)));
  });
  m.def("remove_placement_group", [](py::bytes id) {
    std::string s = id;
    mpiray::TaskId t;
    if (s.size() == 8) std::memcpy(&t.value, s.data(), 8);
    py::gil_scoped_release release;
    detail::Client()->RemovePlacementGroup(t);
  });
  m.def("placement_group_table", [] {
    py::list out;
    for (const auto& g : detail::Client()->PlacementGroups()) {
      py::dict d;
      d["id"] = py::bytes(reinterpret_cast<const char*>(&g.id.value), 8);
      d["name"] = g.name;
      d["strategy"] = g.strategy;
      d["state"] = g.state;
      d["error"] = g.error;
      py::list bundles;
      for (const auto& b : g.bundles) {
        py::dict bd;
        for (const auto& [n, a] : b) bd[py::str(n)] = a;
        bundles.append(bd);
      }
      d["bundles"] = bundles;
      py::list nodes;
      for (uint32_t n : g.nodes) nodes.append(n == detail::kAnyNode ? py::object(py::none()) : py::object(py::int_(n)));
      d["nodes"] = nodes;
      out.append(d);
    }
    return out;
  });
}

}  // namespace mpiray_py
