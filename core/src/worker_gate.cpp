// The argument gate of a worker's actors (WorkerService::GateIfWaiting, GateLoop): an actor call
// whose arguments are not ready does not hold the actor. It steps aside, with the calls of the
// same caller queued after it (each caller's order is kept), and the calls of other callers run
// meanwhile, as in Ray, where a caller sends an actor call only once its arguments are ready.
// One thread per worker (started on the first gated call) watches the waiting calls and puts
// them back at the front of their actor's mailbox once the first one's arguments are ready.
#include <algorithm>

#include "worker.h"
#include "worker_actor.h"

namespace mpiray {

using proto::TaskKind;

namespace {

// The by-reference arguments of `ex` (those the head did not resolve in the message).
std::vector<ObjectId> PendingRefs(const proto::Execute& ex) {
  std::vector<ObjectId> out;
  size_t k = 0;
  for (const proto::Arg& a : ex.spec.args) {
    if (!a.by_ref) continue;
    bool resolved = k < ex.resolved.size() && ex.resolved[k].where != static_cast<uint8_t>(proto::Where::kPending);
    if (k < ex.resolved.size()) ++k;
    if (!resolved) out.push_back(a.ref);
  }
  return out;
}

// How long the gate's thread waits for any gated argument before it looks again (new calls
// at the gate wait at most this long to be looked at).
constexpr int64_t kGatePollMs = 20;

}  // namespace

bool WorkerService::GateIfWaiting(Actor& a, std::unique_ptr<proto::Execute>& item) {
  const proto::TaskSpec& spec = item->spec;
  if (spec.task_kind() != TaskKind::kActorCall) return false;
  {
    std::lock_guard<std::mutex> lk(a.mu);
    if (a.stopping || a.dead) return false;
    const ProcId caller = spec.caller;
    auto& waiting = a.gated[caller];
    waiting.push_back(std::move(item));
    // The caller's later calls wait behind it (re-sent ones, seq 0, keep no order: they stay).
    for (auto it = a.mailbox.begin(); it != a.mailbox.end();) {
      if ((*it)->spec.caller == caller && (*it)->spec.seq != 0 &&
          (*it)->spec.task_kind() == TaskKind::kActorCall) {
        waiting.push_back(std::move(*it));
        it = a.mailbox.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::lock_guard<std::mutex> lk(gate_mu_);
  auto self = a.weak_from_this();
  bool listed = std::any_of(gated_.begin(), gated_.end(), [&](const std::weak_ptr<Actor>& w) {
    return !w.owner_before(self) && !self.owner_before(w);
  });
  if (!listed) gated_.push_back(std::move(self));
  if (!gate_thread_.joinable() && !gate_stop_) {
    gate_thread_ = std::thread([this] { GateLoop(); });
  }
  gate_cv_.notify_one();
  return true;
}

void WorkerService::GateLoop() {
  while (true) {
    std::vector<std::shared_ptr<Actor>> actors;
    {
      std::unique_lock<std::mutex> lk(gate_mu_);
      gate_cv_.wait(lk, [&] { return gate_stop_ || !gated_.empty(); });
      if (gate_stop_) return;
      for (auto it = gated_.begin(); it != gated_.end();) {
        auto a = it->lock();
        if (a && std::find(actors.begin(), actors.end(), a) == actors.end()) actors.push_back(a);
        it = a ? it + 1 : gated_.erase(it);
      }
    }
    // The first waiting call of each caller: ready ones go back to the mailbox's front.
    std::vector<ObjectId> all;
    bool moved = false;
    for (const auto& a : actors) {
      std::vector<std::pair<ProcId, std::vector<ObjectId>>> heads;
      {
        std::lock_guard<std::mutex> lk(a->mu);
        for (const auto& [caller, q] : a->gated) {
          if (!q.empty()) heads.emplace_back(caller, PendingRefs(*q.front()));
        }
      }
      for (auto& [caller, refs] : heads) {
        bool ready = true;
        try {
          if (!refs.empty()) {
            auto flags = client_.Wait(refs, refs.size(), 0);
            for (size_t i = 0; i < refs.size() && i < flags.size(); ++i) {
              if (!flags[i]) {
                ready = false;
                all.push_back(refs[i]);  // waited for below (not those ready already)
              }
            }
          }
        } catch (const std::exception&) {
          ready = true;  // (shutting down, or a bad ref) its own run reports what is wrong
        }
        if (!ready) continue;
        int start = 0;
        bool watch = false;
        {
          std::lock_guard<std::mutex> lk(a->mu);
          auto g = a->gated.find(caller);
          if (g == a->gated.end()) continue;
          for (auto it = g->second.rbegin(); it != g->second.rend(); ++it) {
            a->mailbox.push_front(std::move(*it));
          }
          a->gated.erase(g);
          start = a->Dispatch(&watch);
        }
        moved = true;
        if (watch) Watch(a);
        if (start > 0) StartActorThreads(a, start);
      }
      std::lock_guard<std::mutex> lk(gate_mu_);
      bool empty;
      {
        std::lock_guard<std::mutex> alk(a->mu);
        empty = a->gated.empty();
      }
      if (empty) {
        gated_.erase(std::remove_if(gated_.begin(), gated_.end(),
                                    [&](const std::weak_ptr<Actor>& w) { return w.lock() == a; }),
                     gated_.end());
      }
    }
    if (moved || all.empty()) continue;
    try {  // until one of them is ready (or a while: calls newly at the gate are looked at)
      client_.Wait(all, 1, kGatePollMs);
    } catch (const std::exception&) {
      std::unique_lock<std::mutex> lk(gate_mu_);
      gate_cv_.wait_for(lk, std::chrono::milliseconds(kGatePollMs), [&] { return gate_stop_; });
    }
  }
}

void WorkerService::StopGate() {
  std::thread t;
  {
    std::lock_guard<std::mutex> lk(gate_mu_);
    gate_stop_ = true;
    gate_cv_.notify_all();
    t = std::move(gate_thread_);
  }
  if (t.joinable()) t.join();
}

}  // namespace mpiray
