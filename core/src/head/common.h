// Small helpers shared by the head's owners (core/src/head/*): error payloads, retry budgets,
// the argument references of a task spec. Header-only; no owner state.
#pragma once

#include <cstdint>
#include <string>

#include "mpiray/core/buffer.h"
#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/serialization.h"
#include "mpiray/core/status.h"
#include "protocol.h"

namespace mpiray::head {

/// @brief The payload an object carries when it is an error (what `get` raises).
inline Buffer ErrorPayload(StatusCode code, const std::string& message) {
  return Buffer(detail::MakeErrorPayload(code, message));
}

/// @brief The error a task fails with when one of its arguments is the error `upstream`: an
/// application error as it is; a system error (a crashed worker, a lost object, a cancelled
/// task) marked as come through an argument, which Python raises as a RayTaskError that is
/// also an instance of the system error's type (as Ray, whose worker raises it while reading
/// the arguments). The status code, all that C++ callers see, is unchanged.
inline Buffer ArgumentErrorPayload(const Buffer& upstream) {
  Status st = detail::ErrorFromPayload(upstream);
  if (st.code() == StatusCode::kTaskError || !detail::ErrorExtraFromPayload(upstream).empty()) {
    return upstream;
  }
  return Buffer(detail::MakeErrorPayload(st.code(), st.message(), std::string(detail::kArgumentErrorMark)));
}

/// @brief Take one more try if any are left (-1: forever). The head keeps every retry budget.
inline bool TakeRetry(int32_t& left) {
  if (left == 0) return false;
  if (left > 0) --left;
  return true;
}

/// @brief Call `f(id)` for every object a task's arguments refer to: by-reference arguments
/// and the refs nested in by-value ones.
template <class F>
void ForEachArgRef(const proto::TaskSpec& spec, F&& f) {
  for (const proto::Arg& a : spec.args) {
    if (a.by_ref) f(a.ref);
    for (const ObjectId& n : a.nested) f(n);
  }
}

/// @brief How many return objects the head registers for a spec (an actor creation has one:
/// its handle's readiness object).
/// @brief A task's name as ray.util.state lists it: its name option (or function), and
/// "Class.method" for an actor call (as Ray).
inline std::string DisplayName(const proto::TaskSpec& spec) {
  if (spec.task_kind() == proto::TaskKind::kActorCall && !spec.name.empty()) {
    return spec.name + "." + spec.function;
  }
  return spec.name.empty() ? spec.function : spec.name;
}

inline uint32_t ReturnCount(const proto::TaskSpec& spec) {
  return spec.task_kind() == proto::TaskKind::kActorCreate ? 1 : spec.num_returns;
}

inline constexpr uint8_t WhereByte(proto::Where w) { return static_cast<uint8_t>(w); }

}  // namespace mpiray::head
