// The message path is authenticated: a process that knows a runtime process's UCX address but
// not the session token gets nothing delivered (no task submitted, no bulk bytes written),
// while a process holding the token is heard. Real UCX fabrics (tcp/shared memory on this
// machine), several in one process: `mpiray_itest_fabric_auth`, exit 0 when every check holds.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ucx_fabric.h"

namespace {

using mpiray::ProcId;
using mpiray::UcxFabric;
namespace proto = mpiray::proto;

int failures = 0;

void Check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  if (!ok) ++failures;
}

// Records what reaches the receiving runtime process.
class Recorder final : public mpiray::FabricHandler {
 public:
  void OnMessage(ProcId src, proto::Msg type, const char* body, size_t len) override {
    std::lock_guard<std::mutex> lk(mu);
    messages.push_back({src, type, std::string(body, len)});
    cv.notify_all();
  }
  uint8_t* OnBulkBegin(ProcId, const proto::BulkHeader&, size_t len) override {
    std::lock_guard<std::mutex> lk(mu);
    bulk.assign(len, 0);
    ++bulk_begun;
    return bulk.data();
  }
  void OnBulkEnd(ProcId, const proto::BulkHeader&, size_t, bool ok) override {
    std::lock_guard<std::mutex> lk(mu);
    if (ok) ++bulk_landed;
    cv.notify_all();
  }
  void OnPeerFailed(ProcId, const std::string&) override {}
  void OnTick() override {}

  struct Msg {
    ProcId src;
    proto::Msg type;
    std::string body;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Msg> messages;
  std::vector<uint8_t> bulk;
  int bulk_begun = 0;
  int bulk_landed = 0;
};

std::unique_ptr<UcxFabric> MakeFabric(ProcId self, const char* token) {
  auto f = UcxFabric::Create(mpiray::UcxFabricOptions{});
  if (!f.ok()) {
    std::fprintf(stderr, "cannot create a UCX fabric: %s\n", f.status().ToString().c_str());
    std::exit(2);
  }
  (*f)->set_self(self);
  if (token) (*f)->set_session_token(token);
  return std::move(f).value();
}

// A sender: its own fabric, pointed at the receiver's address, sends one "submit" and one bulk
// chunk (as a task submission and an object transfer would).
void Send(UcxFabric& sender, Recorder& quiet, ProcId to, const mpiray::Buffer& address,
          const std::string& what) {
  sender.Start(&quiet);
  sender.AddPeer(to, address);
  sender.Post(to, proto::Msg::kSubmit, what.data(), what.size());
  static const std::string payload(64 << 10, 'x');  // over the eager limit: rendezvous
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  sender.SendBulk(to, proto::BulkHeader{1, 0, payload.size()}, payload.data(), payload.size(),
                  nullptr, [&](bool) {
                    std::lock_guard<std::mutex> lk(mu);
                    done = true;
                    cv.notify_all();
                  });
  std::unique_lock<std::mutex> lk(mu);
  cv.wait_for(lk, std::chrono::seconds(10), [&] { return done; });
}

}  // namespace

int main() {
  const char* token = "the-session-token";
  Recorder rec;
  auto receiver = MakeFabric(1, token);
  receiver->Start(&rec);

  // 1. Knows the address, has a wrong token; 2. knows the address, never joined (no key).
  for (const char* bad : {"a-guessed-token", static_cast<const char*>(nullptr)}) {
    Recorder quiet;
    auto intruder = MakeFabric(7, bad);
    Send(*intruder, quiet, 1, receiver->address(), "intruder");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    intruder->Stop();
  }
  {
    std::lock_guard<std::mutex> lk(rec.mu);
    Check(rec.messages.empty(), "no message from a process without the token is delivered");
    Check(rec.bulk_begun == 0, "no bulk bytes from a process without the token are written");
  }
  Check(receiver->rejected() >= 4, "the receiver counted the dropped messages (" +
                                       std::to_string(receiver->rejected()) + ")");

  // 3. A process of the session (same token) is heard: the checks above can fail.
  {
    Recorder quiet;
    auto member = MakeFabric(2, token);
    Send(*member, quiet, 1, receiver->address(), "member");
    std::unique_lock<std::mutex> lk(rec.mu);
    rec.cv.wait_for(lk, std::chrono::seconds(10),
                    [&] { return !rec.messages.empty() && rec.bulk_landed > 0; });
    Check(rec.messages.size() == 1 && rec.messages[0].src == 2 &&
              rec.messages[0].type == proto::Msg::kSubmit && rec.messages[0].body == "member",
          "a message from a process with the token is delivered");
    Check(rec.bulk_landed == 1 && rec.bulk.size() == (64u << 10) && rec.bulk[0] == 'x',
          "bulk bytes from a process with the token land");
    lk.unlock();
    member->Stop();
  }
  receiver->Stop();
  std::printf("%s\n", failures == 0 ? "fabric auth OK" : "fabric auth FAILED");
  return failures == 0 ? 0 : 1;
}
