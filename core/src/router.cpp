#include "router.h"

#include <cstdio>
#include <cstdlib>

#include "log.h"

namespace mpiray {

void MessageRouter::Add(proto::Msg type, Handler handler) {
  auto i = static_cast<uint16_t>(type);
  if (i >= handlers_.size() || handlers_[i]) {
    fprintf(stderr, "mpiray: internal error: message %s (%u) registered twice or out of range\n",
            proto::MsgName(type), i);
    std::abort();
  }
  handlers_[i] = std::move(handler);
}

Status MessageRouter::Dispatch(ProcId src, proto::Msg type, const char* body, size_t len) const {
  auto i = static_cast<uint16_t>(type);
  if (i >= handlers_.size() || !handlers_[i]) {
    return InvalidArgument("unexpected message " + std::to_string(i) + " (" + proto::MsgName(type) +
                           "): this process has no handler for it");
  }
  return handlers_[i](src, body, len);
}

void MessageRouter::Route(ProcId src, proto::Msg type, const char* body, size_t len) const {
  Status st = Dispatch(src, type, body, len);
  if (!st.ok()) {
    MPIRAY_LOG(warn, "message {} from process {}: {}", proto::MsgName(type), src, st.ToString());
  }
}

}  // namespace mpiray
