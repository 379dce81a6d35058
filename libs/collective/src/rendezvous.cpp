// The C++ rendezvous: a named actor ("mpiray.collective.registry" in namespace
// "_mpiray_collective") keeps the Registry; members join through it and poll until everyone
// has. Only the public C++ API is used: no ports, no files.
#include <chrono>
#include <msgpack.hpp>
#include <thread>

#include "mpiray/collective/group.h"
#include "mpiray/core/api.h"
#include "registry.h"
#include "rendezvous.h"

namespace mpiray::collective::detail {

struct RegistryReply {
  int code = 0;
  std::string message;
  uint64_t incarnation = 0;
  std::vector<int> joined;
  std::vector<std::string> blobs;
  MSGPACK_DEFINE(code, message, incarnation, joined, blobs)
};

}  // namespace mpiray::collective::detail

/// The actor class (a distinctive name: registered names are global in a job).
class MpirayCollectiveRegistry {
 public:
  using Reply = mpiray::collective::detail::RegistryReply;
  static MpirayCollectiveRegistry* Create() { return new MpirayCollectiveRegistry(); }

  Reply Join(std::string name, int world_size, int rank, std::string blob) {
    Reply r;
    auto id = reg_.Join(name, world_size, rank, blob);
    if (!id.ok()) return Error(id.status());
    r.incarnation = *id;
    return r;
  }
  Reply Publish(uint64_t incarnation, int rank, int round, std::string blob) {
    mpiray::Status st = reg_.Publish(incarnation, rank, round, blob);
    return st.ok() ? Reply{} : Error(st);
  }
  Reply Collect(uint64_t incarnation, int round) {
    Reply r;
    auto blobs = reg_.Collect(incarnation, round, &r.joined);
    if (!blobs.ok()) return Error(blobs.status());
    r.blobs = std::move(*blobs);
    return r;
  }
  int Leave(uint64_t incarnation, int rank) {
    reg_.Leave(incarnation, rank);
    return 0;
  }

 private:
  static Reply Error(const mpiray::Status& st) {
    Reply r;
    r.code = static_cast<int>(st.code());
    r.message = st.message();
    return r;
  }
  mpiray::collective::detail::Registry reg_;
};

MPIRAY_REMOTE(MpirayCollectiveRegistry::Create, &MpirayCollectiveRegistry::Join, &MpirayCollectiveRegistry::Publish,
              &MpirayCollectiveRegistry::Collect, &MpirayCollectiveRegistry::Leave);

namespace mpiray::collective::detail {

namespace {

constexpr const char* kRegistryName = "mpiray.collective.registry";
constexpr const char* kRegistryNamespace = "_mpiray_collective";

using Handle = mpiray::ActorHandle<MpirayCollectiveRegistry>;

Status ReplyStatus(const RegistryReply& r) {
  return r.code == 0 ? Status::OK() : Status(static_cast<StatusCode>(r.code), r.message);
}

int64_t JoinTimeoutMs(const GroupOptions& o) {
  if (o.join_timeout_ms > 0) return o.join_timeout_ms;
  const char* v = std::getenv("MPIRAY_COLLECTIVE_JOIN_TIMEOUT_MS");
  if (v && *v) return std::max<int64_t>(1, std::atoll(v));
  return 60000;
}

class ActorRendezvous final : public Rendezvous {
 public:
  Result<Roster> Join(const GroupOptions& o, const std::string& mine) override {
    RegistryReply reply;
    Status last;
    for (int attempt = 0; attempt < 50; ++attempt) {
      try {
        auto found = mpiray::GetActor<MpirayCollectiveRegistry>(kRegistryName, kRegistryNamespace);
        if (!found) {
          try {
            mpiray::Actor(MpirayCollectiveRegistry::Create).SetName(kRegistryName, kRegistryNamespace).Remote();
          } catch (const mpiray::Error&) {
            // The name was taken at the same moment (the driver learns it here).
          }
          // Whoever won the name: a worker whose creation lost only learns it from the creation's
          // result, so ask the head which actor holds the name (it handled our creation first).
          for (int i = 0; i < 200 && !found; ++i) {
            found = mpiray::GetActor<MpirayCollectiveRegistry>(kRegistryName, kRegistryNamespace);
            if (!found) std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
          if (!found) throw mpiray::Error(StatusCode::kUnavailable, "the rendezvous actor could not be created");
        }
        handle_ = *found;
        reply = *mpiray::Get(handle_.Task(&MpirayCollectiveRegistry::Join).Remote(o.name, o.world_size, o.rank, mine));
        last = Status::OK();
        break;
      } catch (const mpiray::Error& e) {
        // Another member created the registry at the same moment (its name was taken), or the
        // registry's worker died: look again.
        last = Status(StatusCode::kUnavailable, e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(10 + 5 * attempt));
      }
    }
    if (!last.ok()) return Status(last.code(), "collective group '" + o.name + "': cannot reach the rendezvous: " + last.message());
    MPIRAY_RETURN_IF_ERROR(ReplyStatus(reply));
    Roster roster;
    roster.incarnation = reply.incarnation;
    MPIRAY_ASSIGN_OR_RETURN(roster.members, Await(o, reply.incarnation, 0));
    return roster;
  }

  Result<std::vector<std::string>> Exchange(const GroupOptions& o, uint64_t incarnation, int round,
                                            const std::string& mine) override {
    try {
      auto r = *mpiray::Get(handle_.Task(&MpirayCollectiveRegistry::Publish).Remote(incarnation, o.rank, round, mine));
      MPIRAY_RETURN_IF_ERROR(ReplyStatus(r));
    } catch (const mpiray::Error& e) {
      return Status(StatusCode::kUnavailable, "collective group '" + o.name + "': rendezvous failed: " + e.what());
    }
    return Await(o, incarnation, round);
  }

  void Leave(const GroupOptions& o, uint64_t incarnation) override {
    try {
      handle_.Task(&MpirayCollectiveRegistry::Leave).Remote(incarnation, o.rank);
    } catch (const mpiray::Error&) {
      // The registry is gone with its worker; nothing to free.
    }
  }

 private:
  Result<std::vector<std::string>> Await(const GroupOptions& o, uint64_t incarnation, int round) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(JoinTimeoutMs(o));
    int delay_us = 500;
    for (;;) {
      RegistryReply r;
      try {
        r = *mpiray::Get(handle_.Task(&MpirayCollectiveRegistry::Collect).Remote(incarnation, round));
      } catch (const mpiray::Error& e) {
        return Status(StatusCode::kUnavailable, "collective group '" + o.name + "': rendezvous failed: " + e.what());
      }
      MPIRAY_RETURN_IF_ERROR(ReplyStatus(r));
      if (!r.blobs.empty()) return r.blobs;
      if (std::chrono::steady_clock::now() > deadline) {
        std::string joined;
        for (int j : r.joined) joined += (joined.empty() ? "" : ", ") + std::to_string(j);
        return Status(StatusCode::kTimeout,
                      "collective group '" + o.name + "': timed out after " + std::to_string(JoinTimeoutMs(o)) +
                          " ms waiting for all " + std::to_string(o.world_size) + " members to join; joined: [" +
                          joined + "]");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      delay_us = std::min(delay_us * 2, 50000);
    }
  }

  Handle handle_;
};

}  // namespace

std::unique_ptr<Rendezvous> MakeActorRendezvous() { return std::make_unique<ActorRendezvous>(); }

}  // namespace mpiray::collective::detail
