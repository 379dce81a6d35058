#include "head/lineage.h"

#include "head/common.h"

namespace mpiray::head {

using proto::Where;

void LineageTable::Keep(proto::TaskSpec&& spec, int32_t retries_left, uint32_t shape) {
  TaskId tid = spec.id;
  auto [it, fresh] = lineage_.try_emplace(tid);
  LineageRec& l = it->second;
  l.retries_left = retries_left;
  std::vector<bool> keep_pin;  // per argument: its pin now belongs to the lineage
  if (fresh) {
    l.shape = shape;
    // Its arguments may have to be made again too: hold their lineage, or the arguments.
    keep_pin.resize(spec.args.size());
    for (size_t i = 0; i < spec.args.size(); ++i) {
      const proto::Arg& a = spec.args[i];
      for (const ObjectId& n : a.nested) l.pinned.push_back(n);
      if (!a.by_ref) continue;
      auto up = lineage_.find(a.ref.task_id());
      if (up != lineage_.end()) {
        ++up->second.refs;
        continue;
      }
      const ObjectEntry* e = objects_.Find(a.ref);
      if (a.ref.is_put() || (e && e->where == WhereByte(Where::kInline))) {
        l.pinned.push_back(a.ref);
        keep_pin[i] = true;
      }
    }
    l.spec = std::move(spec);
  }
  for (uint32_t i = 0; i < l.spec.num_returns; ++i) {
    ObjectEntry* e = objects_.Find(l.spec.ReturnId(i));
    if (e && !e->lineage) {
      e->lineage = true;
      ++l.refs;
    }
  }
  objects_.ForEachItem(l.spec, [&](const ObjectId&, ObjectEntry& e) {  // a generator's items
    if (!e.lineage) {
      e.lineage = true;
      ++l.refs;
    }
  });
  // Only now may the arguments go (their lineage is held above), but for those the lineage
  // pins itself (a rerun's own pins all go). Unpinning frees objects, which only releases
  // other tasks' lineage: `l` stays valid.
  if (fresh) {
    for (size_t i = 0; i < l.spec.args.size(); ++i) {
      if (l.spec.args[i].by_ref && !keep_pin[i]) objects_.Unpin(l.spec.args[i].ref);
    }
  } else {
    ForEachArgRef(spec, [this](const ObjectId& id) { objects_.Unpin(id); });
  }
  if (l.refs == 0) Release(tid, /*drop_ref=*/false);
}

void LineageTable::Release(TaskId tid, bool drop_ref) {
  std::vector<TaskId> work{tid};
  bool first = true;
  while (!work.empty()) {
    TaskId id = work.back();
    work.pop_back();
    auto it = lineage_.find(id);
    if (it == lineage_.end()) continue;
    if (!first || drop_ref) --it->second.refs;
    first = false;
    if (it->second.refs > 0) continue;
    for (const proto::Arg& a : it->second.spec.args) {
      if (a.by_ref && lineage_.count(a.ref.task_id())) work.push_back(a.ref.task_id());
    }
    std::vector<ObjectId> pinned = std::move(it->second.pinned);
    lineage_.erase(it);
    for (const ObjectId& p : pinned) objects_.Unpin(p);  // may free objects (and release lineage)
  }
}

}  // namespace mpiray::head
