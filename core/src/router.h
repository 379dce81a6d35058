// MessageRouter: the one table from message type to the handler that owns it. At start-up each
// service registers its handlers (the handler of kFoo is a method named OnFoo of the service
// that owns the fact, see docs/architecture.md "Messages"); the progress thread calls Route
// for every message, which decodes the body once into the handler's message struct and runs
// it. A handler that fails returns a Status, which Route logs with the message's name and
// sender: nothing throws through the fabric and no status is dropped silently.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "fabric.h"
#include "mpiray/core/status.h"
#include "protocol.h"

namespace mpiray {

class MessageRouter {
 public:
  /// @brief A handler of raw bodies (decoding is the typed On's job).
  using Handler = std::function<Status(ProcId src, const char* body, size_t len)>;

  /// @brief Register `handler(ProcId src, M&& msg)` for `type`: the body is decoded into `M`
  /// first. The handler returns Status (or nothing when it cannot fail). One handler per type.
  template <class M, class F>
  void On(proto::Msg type, F handler) {
    Add(type, [h = std::move(handler), type](ProcId src, const char* body, size_t len) -> Status {
      M msg;
      MPIRAY_RETURN_IF_ERROR(Decode(type, body, len, &msg));
      if constexpr (std::is_void_v<std::invoke_result_t<F&, ProcId, M&&>>) {
        h(src, std::move(msg));
        return Status::OK();
      } else {
        return h(src, std::move(msg));
      }
    });
  }
  /// @brief Register a raw handler for `type` (a second handler for a type is a bug: abort).
  void Add(proto::Msg type, Handler handler);
  bool Handles(proto::Msg type) const {
    auto i = static_cast<uint16_t>(type);
    return i < handlers_.size() && handlers_[i] != nullptr;
  }
  /// @brief Run the handler of `type`: its status, or an error for a type nobody handles.
  Status Dispatch(ProcId src, proto::Msg type, const char* body, size_t len) const;
  /// @brief Dispatch, logging a failure (with the message's name and sender).
  void Route(ProcId src, proto::Msg type, const char* body, size_t len) const;

 private:
  template <class M>
  static Status Decode(proto::Msg type, const char* body, size_t len, M* out) {
    try {
      *out = DecodeMsg<M>(body, len);
      return Status::OK();
    } catch (const std::exception& e) {
      return InvalidArgument(std::string("malformed ") + proto::MsgName(type) + " message: " + e.what());
    }
  }

  std::array<Handler, proto::kMsgLimit> handlers_{};
};

}  // namespace mpiray
