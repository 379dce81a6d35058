// ray.cancel of a task running in this worker (WorkerService::OnCancelRunning).
#include <cstdlib>

#include "log.h"
#include "worker.h"
#include "worker_actor.h"

namespace mpiray {

using proto::TaskKind;

void WorkerService::OnCancelRunning(const TaskId& task, bool force) {
  std::unique_ptr<proto::Execute> found;
  // An actor call still in an actor's queue is dropped with a cancelled result.
  std::vector<std::shared_ptr<Actor>> actors;
  {
    std::lock_guard<std::mutex> lk(actors_mu_);
    for (auto& [id, a] : actors_) actors.push_back(a);
  }
  for (auto& a : actors) {
    {
      std::lock_guard<std::mutex> lk(a->mu);
      for (auto it = a->mailbox.begin(); it != a->mailbox.end(); ++it) {
        if ((*it)->spec.id == task && (*it)->spec.task_kind() == TaskKind::kActorCall) {
          found = std::move(*it);
          a->mailbox.erase(it);
          if (a->mailbox.empty()) a->waking = false;  // (nothing left for a woken thread)
          break;
        }
      }
    }
    if (found) {
      ReportDone(found->spec,
                 ErrorReturns(found->spec, Status(StatusCode::kCancelled,
                                                  "actor call " + found->spec.function + " was cancelled")),
                 proto::DoneStatus::kOk);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if ((*it)->spec.id == task) {
        found = std::move(*it);
        queue_.erase(it);
        break;
      }
    }
    if (!found) cancelled_.insert(task);
  }
  if (found) {
    ReportDone(found->spec, {}, proto::DoneStatus::kCancelled);
    return;
  }
  bool running;
  {
    std::lock_guard<std::mutex> lk(mu_);
    running = running_.count(task) > 0;
  }
  if (force && running) {
    // As Ray's force=True: the process running it ends (the head fails the task as
    // cancelled, never retried, and a local worker is replaced).
    MPIRAY_LOG(warn, "task {} cancelled with force=True: this worker exits", task.ToString());
    BeforeExit();
    std::_Exit(1);
  }
  // Running (or not here yet): interrupt it, so that a cancelled task does not keep its CPU.
  for (uint8_t l : {detail::kLanguagePython}) {
    if (auto* rt = detail::FindLanguage(l)) rt->Interrupt(task);
  }
}

}  // namespace mpiray
