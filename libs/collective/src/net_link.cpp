#include "net_link.h"

#include <poll.h>
#include <ucp/api/ucp.h>

#include <array>
#include <cstring>
#include <deque>

namespace mpiray::collective::detail {

namespace {

constexpr int kStreams = 5;
constexpr uint64_t kSeqMask = (uint64_t{1} << 40) - 1;
constexpr uint64_t kStreamMask = uint64_t{0xF} << 60;

uint64_t MakeTag(Stream s, int src, uint64_t seq) {
  return (static_cast<uint64_t>(s) << 60) | (static_cast<uint64_t>(src & 0xFFFFF) << 40) | (seq & kSeqMask);
}

Status UcxError(ucs_status_t st, const std::string& what) {
  return Status(StatusCode::kFabricError, what + ": " + ucs_status_string(st));
}

}  // namespace

struct NetLink::Impl {
  Impl(Health& h) : health(h) {}
  Health& health;
  int rank = 0;
  int world = 0;
  size_t piece = 1 << 20;
  uint32_t spin = 512;
  uint32_t yields = 4096;
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  int efd = -1;

  struct Peer {
    Impl* impl = nullptr;
    int rank = 0;
    std::string address;
    ucp_ep_h ep = nullptr;
    bool failed = false;
    std::string why;
    std::array<uint64_t, kStreams> send_seq{};
    std::array<uint64_t, kStreams> recv_seq{};
  };
  std::vector<Peer> peers;

  struct LiveOp {
    Op op;
    void* request = nullptr;
    bool is_recv = false;
  };
  std::deque<LiveOp> live;  // stable addresses; cleared when a Wait finishes

  LiveOp abort_in;
  std::array<char, 2048> abort_buf{};
  std::string abort_out;
  bool abandoned = false;

  static void OnEpError(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* p = static_cast<Peer*>(arg);
    if (!p->failed) {
      p->failed = true;
      p->why = ucs_status_string(status);
    }
  }
  static void SendDone(void* request, ucs_status_t status, void* user) {
    auto* op = static_cast<LiveOp*>(user);
    op->op.done = true;
    op->request = nullptr;
    if (status != UCS_OK) {
      op->op.failed = true;
      op->op.error = ucs_status_string(status);
    }
    ucp_request_free(request);
  }
  static void RecvDone(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user) {
    auto* op = static_cast<LiveOp*>(user);
    op->op.done = true;
    op->request = nullptr;
    if (status != UCS_OK) {
      op->op.failed = true;
      op->op.error = ucs_status_string(status);
    } else if (info) {
      op->op.length = info->length;
    }
    ucp_request_free(request);
  }

  bool EnsureEp(Peer& p) {
    if (p.ep || p.failed) return p.ep != nullptr;
    if (p.address.empty()) {
      p.failed = true;
      p.why = "no address";
      return false;
    }
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(p.address.data());
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &Impl::OnEpError;
    ep.err_handler.arg = &p;
    ucs_status_t st = ucp_ep_create(worker, &ep, &p.ep);
    if (st != UCS_OK) {
      p.ep = nullptr;
      p.failed = true;
      p.why = ucs_status_string(st);
      return false;
    }
    return true;
  }

  void PostAbortRecv() {
    abort_in = LiveOp{};
    abort_in.is_recv = true;
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_RECV_INFO;
    rp.cb.recv = &Impl::RecvDone;
    rp.user_data = &abort_in;
    ucp_tag_recv_info_t info{};
    rp.recv_info.tag_info = &info;
    ucs_status_ptr_t r = ucp_tag_recv_nbx(worker, abort_buf.data(), abort_buf.size() - 1,
                                          MakeTag(Stream::kAbort, 0, 0), kStreamMask, &rp);
    if (r == nullptr) {
      abort_in.op.done = true;
      abort_in.op.length = info.length;
    } else if (UCS_PTR_IS_ERR(r)) {
      abort_in.op.done = true;
      abort_in.op.failed = true;
    } else {
      abort_in.request = r;
    }
  }

  void CloseEps(bool force) {
    for (auto& p : peers) {
      if (!p.ep) continue;
      ucp_request_param_t rp{};
      rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      rp.flags = force || p.failed ? UCP_EP_CLOSE_FLAG_FORCE : 0;
      ucs_status_ptr_t r = ucp_ep_close_nbx(p.ep, &rp);
      p.ep = nullptr;
      if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
        auto deadline = Clock::now() + std::chrono::milliseconds(force ? 200 : 2000);
        while (ucp_request_check_status(r) == UCS_INPROGRESS && Clock::now() < deadline) {
          ucp_worker_progress(worker);
        }
        if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker, r);
        ucp_request_free(r);
      }
    }
  }

  // After a failure: nothing may touch the caller's buffers once the call returns. Cancel the
  // receives, force-close the endpoints (failing the sends) and progress until every request
  // has called back.
  void Abandon() {
    if (abandoned) return;
    abandoned = true;
    for (auto& op : live) {
      if (!op.op.done && op.request && op.is_recv) ucp_request_cancel(worker, op.request);
    }
    CloseEps(true);
    auto deadline = Clock::now() + std::chrono::seconds(2);
    auto pending = [&] {
      for (auto& op : live) {
        if (!op.op.done) return true;
      }
      return false;
    };
    while (pending() && Clock::now() < deadline) ucp_worker_progress(worker);
  }
};

Result<std::unique_ptr<NetLink>> NetLink::Create(Health& health, int rank, int world_size, size_t piece,
                                                 uint32_t spin, uint32_t yields) {
  auto impl = std::make_unique<Impl>(health);
  impl->rank = rank;
  impl->world = world_size;
  impl->piece = piece;
  impl->spin = spin;
  impl->yields = yields;
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return UcxError(st, "ucp_config_read");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  st = ucp_init(&params, config, &impl->context);
  ucp_config_release(config);
  if (st != UCS_OK) return UcxError(st, "ucp_init");
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;  // the Group's lock serialises its users
  st = ucp_worker_create(impl->context, &wp, &impl->worker);
  if (st != UCS_OK) {
    ucp_cleanup(impl->context);
    return UcxError(st, "ucp_worker_create");
  }
  st = ucp_worker_get_efd(impl->worker, &impl->efd);
  if (st != UCS_OK) impl->efd = -1;
  ucp_address_t* addr = nullptr;
  size_t len = 0;
  st = ucp_worker_get_address(impl->worker, &addr, &len);
  if (st != UCS_OK) return UcxError(st, "ucp_worker_get_address");
  std::string address(reinterpret_cast<const char*>(addr), len);
  ucp_worker_release_address(impl->worker, addr);
  impl->PostAbortRecv();
  auto link = std::unique_ptr<NetLink>(new NetLink(std::move(impl)));
  link->address_ = std::move(address);
  return link;
}

NetLink::NetLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

size_t NetLink::piece() const { return impl_->piece; }

NetLink::~NetLink() {
  Impl& m = *impl_;
  if (m.abort_in.request) {
    ucp_request_cancel(m.worker, m.abort_in.request);
    auto deadline = Clock::now() + std::chrono::milliseconds(200);
    while (!m.abort_in.op.done && Clock::now() < deadline) ucp_worker_progress(m.worker);
  }
  m.Abandon();
  // A normal leave flushes (the others may still be reading our last messages).
  m.CloseEps(false);
  // Messages nobody will receive (abort notices after a failure): take them, so that UCX has
  // no unexpected message to warn about when the worker goes.
  for (int i = 0; i < 10000; ++i) {
    ucp_tag_recv_info_t info{};
    ucp_tag_message_h msg = ucp_tag_probe_nb(m.worker, 0, 0, 1, &info);
    if (!msg) break;
    std::vector<char> sink(info.length);
    ucp_request_param_t rp{};
    ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(m.worker, sink.data(), sink.size(), msg, &rp);
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
      auto deadline = Clock::now() + std::chrono::milliseconds(100);
      while (ucp_request_check_status(r) == UCS_INPROGRESS && Clock::now() < deadline) ucp_worker_progress(m.worker);
      if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(m.worker, r);
      ucp_request_free(r);
    }
  }
  ucp_worker_destroy(m.worker);
  ucp_cleanup(m.context);
}

Status NetLink::SetPeers(const std::vector<std::string>& addresses, const std::vector<int>& eager) {
  Impl& m = *impl_;
  m.peers.resize(addresses.size());
  for (size_t r = 0; r < addresses.size(); ++r) {
    m.peers[r].impl = &m;
    m.peers[r].rank = static_cast<int>(r);
    m.peers[r].address = addresses[r];
  }
  for (int r : eager) {
    if (r == m.rank) continue;
    if (!m.EnsureEp(m.peers[static_cast<size_t>(r)])) {
      return Status(StatusCode::kFabricError, "collective group '" + m.health.group() +
                                                  "': cannot connect to member rank " + std::to_string(r) +
                                                  " (" + m.health.Where(r) + "): " + m.peers[static_cast<size_t>(r)].why);
    }
  }
  return Status::OK();
}

Status NetLink::PostSend(int peer, Stream stream, const void* data, size_t bytes, std::vector<Op*>* ops) {
  Impl& m = *impl_;
  if (m.abandoned) return m.health.broken();
  auto& p = m.peers[static_cast<size_t>(peer)];
  if (!m.EnsureEp(p)) {
    return m.health.Fail(Status(StatusCode::kUnavailable,
                                "collective group '" + m.health.group() + "': lost the connection to member rank " +
                                    std::to_string(peer) + " (" + m.health.Where(peer) + "): " + p.why));
  }
  size_t pieces = bytes == 0 ? 1 : (bytes + m.piece - 1) / m.piece;
  auto* base = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < pieces; ++i) {
    size_t off = i * m.piece, len = std::min(m.piece, bytes - std::min(bytes, off));
    m.live.emplace_back();
    Impl::LiveOp& op = m.live.back();
    op.op.peer = peer;
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.send = &Impl::SendDone;
    rp.user_data = &op;
    uint64_t tag = MakeTag(stream, m.rank, p.send_seq[static_cast<size_t>(stream)]++);
    ucs_status_ptr_t r = ucp_tag_send_nbx(p.ep, base + off, len, tag, &rp);
    if (r == nullptr) {
      op.op.done = true;
    } else if (UCS_PTR_IS_ERR(r)) {
      op.op.done = true;
      op.op.failed = true;
      op.op.error = ucs_status_string(UCS_PTR_STATUS(r));
    } else {
      op.request = r;
    }
    ops->push_back(&op.op);
  }
  return Status::OK();
}

Status NetLink::PostRecv(int peer, Stream stream, void* data, size_t bytes, std::vector<Op*>* ops) {
  Impl& m = *impl_;
  if (m.abandoned) return m.health.broken();
  auto& p = m.peers[static_cast<size_t>(peer)];
  m.EnsureEp(p);  // for its error callback: a dead sender must fail this receive
  size_t pieces = bytes == 0 ? 1 : (bytes + m.piece - 1) / m.piece;
  auto* base = static_cast<uint8_t*>(data);
  for (size_t i = 0; i < pieces; ++i) {
    size_t off = i * m.piece, len = std::min(m.piece, bytes - std::min(bytes, off));
    m.live.emplace_back();
    Impl::LiveOp& op = m.live.back();
    op.op.peer = peer;
    op.is_recv = true;
    ucp_request_param_t rp{};
    ucp_tag_recv_info_t info{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_RECV_INFO;
    rp.cb.recv = &Impl::RecvDone;
    rp.user_data = &op;
    rp.recv_info.tag_info = &info;
    uint64_t tag = MakeTag(stream, peer, p.recv_seq[static_cast<size_t>(stream)]++);
    ucs_status_ptr_t r = ucp_tag_recv_nbx(m.worker, base + off, len, tag, ~uint64_t{0}, &rp);
    op.op.length = len;
    if (r == nullptr) {
      op.op.done = true;
      op.op.length = info.length;
    } else if (UCS_PTR_IS_ERR(r)) {
      op.op.done = true;
      op.op.failed = true;
      op.op.error = ucs_status_string(UCS_PTR_STATUS(r));
    } else {
      op.request = r;
    }
    ops->push_back(&op.op);
  }
  return Status::OK();
}

Status NetLink::Poll() {
  Impl& m = *impl_;
  if (!m.abandoned) ucp_worker_progress(m.worker);
  if (m.abort_in.op.done && !m.abort_in.op.failed && m.abort_in.op.length >= sizeof(int32_t)) {
    // An abort message: the status code, then the text (the original member's words).
    m.abort_buf[std::min(m.abort_in.op.length, m.abort_buf.size() - 1)] = '\0';
    int32_t code = 0;
    std::memcpy(&code, m.abort_buf.data(), sizeof code);
    return Status(static_cast<StatusCode>(code), std::string(m.abort_buf.data() + sizeof code));
  }
  return Status::OK();
}

void NetLink::SendAbort(const Status& st) {
  Impl& m = *impl_;
  if (m.abandoned) return;
  int32_t code = static_cast<int32_t>(st.code());
  m.abort_out.assign(reinterpret_cast<const char*>(&code), sizeof code);
  m.abort_out += st.message().substr(0, m.abort_buf.size() - sizeof code - 1);
  std::vector<void*> reqs;
  for (auto& p : m.peers) {
    if (!p.ep || p.failed) continue;
    ucp_request_param_t rp{};
    ucs_status_ptr_t r = ucp_tag_send_nbx(p.ep, m.abort_out.data(), m.abort_out.size(),
                                          MakeTag(Stream::kAbort, m.rank, 0), &rp);
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) reqs.push_back(r);
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(200);
  for (void* r : reqs) {
    while (ucp_request_check_status(r) == UCS_INPROGRESS && Clock::now() < deadline) {
      ucp_worker_progress(m.worker);
    }
    if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(m.worker, r);
    ucp_request_free(r);
  }
}

void NetLink::Sleep() {
  Impl& m = *impl_;
  if (m.efd < 0 || m.abandoned) return;
  if (ucp_worker_arm(m.worker) != UCS_OK) return;  // events pending: progress instead
  pollfd pfd{m.efd, POLLIN, 0};
  poll(&pfd, 1, 1);
}

Status NetLink::Wait(std::vector<Op*>& ops, const char* what, Clock::time_point start) {
  Impl& m = *impl_;
  auto finish = [&](Status st) {
    if (!st.ok()) {
      st = m.health.Fail(st);
      m.Abandon();
    }
    ops.clear();
    bool all_done = true;
    for (auto& op : m.live) all_done = all_done && op.op.done;
    if (all_done) m.live.clear();
    return st;
  };
  Backoff backoff(m.spin, m.yields);
  uint64_t idle = 0;
  auto last_check = start;
  size_t next = 0;  // ops before `next` are done
  for (;;) {
    if (Status b = m.health.broken(); !b.ok()) return finish(b);
    unsigned progressed = m.abandoned ? 0 : ucp_worker_progress(m.worker);
    while (next < ops.size() && ops[next]->done) {
      Op* op = ops[next];
      if (op->failed) {
        if (Status why = Poll(); !why.ok()) return finish(why);
        int peer = op->peer;
        std::string why = m.peers[static_cast<size_t>(peer)].failed ? m.peers[static_cast<size_t>(peer)].why : op->error;
        return finish(Status(StatusCode::kUnavailable,
                             "collective group '" + m.health.group() + "': " + what + " on rank " +
                                 std::to_string(m.rank) + " failed talking to member rank " + std::to_string(peer) +
                                 " (" + m.health.Where(peer) + "): " + why));
      }
      ++next;
    }
    if (next == ops.size()) return finish(Status::OK());
    for (size_t i = next; i < ops.size(); ++i) {
      const auto& p = m.peers[static_cast<size_t>(ops[i]->peer)];
      if (p.failed && !ops[i]->done) {
        // A member that gave up first tells why before it closes: prefer its words.
        auto grace = Clock::now() + std::chrono::milliseconds(100);
        while (Clock::now() < grace) {
          Status why = Poll();
          if (!why.ok()) return finish(why);
        }
        return finish(Status(StatusCode::kUnavailable,
                             "collective group '" + m.health.group() + "': member rank " + std::to_string(p.rank) +
                                 " (" + m.health.Where(p.rank) + ") is unreachable (" + p.why + "); " + what +
                                 " failed. Destroy the group (destroy_collective_group) and create it again."));
      }
    }
    if (progressed) {
      backoff.Reset();
      continue;
    }
    if ((++idle & 15) == 0) {
      auto now = Clock::now();
      if (now - last_check > std::chrono::milliseconds(20)) {
        last_check = now;
        Status st = m.health.Check(what, start, false);
        if (!st.ok()) return finish(st);
      }
    }
    backoff.Pause([this] { Sleep(); });
  }
}

}  // namespace mpiray::collective::detail
