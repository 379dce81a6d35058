// HeadRoutes: where the head's owners register the messages they handle. Each handler runs
// through the HeadService's gate: under the head's lock, after the sender is marked alive, and
// followed by a dispatch of the work it made possible. An owner registers its own messages
// (its Register method), so a new message touches protocol.h and its owner only; messages that
// cross owners are registered by the HeadService itself.
#pragma once

#include <type_traits>
#include <utility>

#include "mpiray/core/status.h"
#include "protocol.h"
#include "router.h"

namespace mpiray::head {

/// @brief A non-owning reference to a callable `Status()` (no allocation per message).
class StatusFn {
 public:
  template <class F>
  explicit StatusFn(F& f) : obj_(&f), call_([](void* o) { return (*static_cast<F*>(o))(); }) {}
  Status operator()() const { return call_(obj_); }

 private:
  void* obj_;
  Status (*call_)(void*);
};

class HeadRoutes {
 public:
  /// @brief Runs a handler's body the head's way (lock, liveness, dispatch afterwards).
  class Gate {
   public:
    virtual ~Gate() = default;
    virtual Status Run(ProcId src, StatusFn body) = 0;
  };

  HeadRoutes(MessageRouter& router, Gate& gate) : router_(router), gate_(gate) {}

  /// @brief Register `handler(ProcId src, M&& msg)` (returning Status or nothing) for `type`.
  template <class M, class F>
  void On(proto::Msg type, F handler) {
    Gate* gate = &gate_;
    router_.On<M>(type, [gate, h = std::move(handler)](ProcId src, M&& msg) -> Status {
      auto body = [&]() -> Status {
        if constexpr (std::is_void_v<std::invoke_result_t<F&, ProcId, M&&>>) {
          h(src, std::move(msg));
          return Status::OK();
        } else {
          return h(src, std::move(msg));
        }
      };
      return gate->Run(src, StatusFn(body));
    });
  }

 private:
  MessageRouter& router_;
  Gate& gate_;
};

}  // namespace mpiray::head
