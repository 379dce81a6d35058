#include "ucx_fabric.h"

#include <poll.h>
#include <sched.h>
#include <sodium.h>
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>

#include "log.h"

namespace mpiray {
namespace {

constexpr unsigned kAmBatch = 1;  // a batch of framed control messages
constexpr unsigned kAmBulk = 2;   // one chunk of object bytes

// Sent as the UCP active-message header.
struct AmHeader {
  uint32_t src = 0;
  uint32_t pad = 0;
  uint64_t seq = 0;
  proto::BulkHeader bulk;
  // The session's key (derived from its token): a process that did not join with the token
  // cannot make the runtime act (see "Security" in docs/architecture.md).
  uint8_t key[16] = {};
};

// Equal keys, in time independent of where they differ.
bool SameKey(const uint8_t* a, const uint8_t* b) {
  uint8_t diff = 0;
  for (int i = 0; i < 16; ++i) diff |= static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

// Frame inside a batch: u16 type, u32 length, body.
constexpr size_t kFrameHeader = 6;

using Clock = std::chrono::steady_clock;

}  // namespace

Status UcxStatus(int ucs_status, const std::string& what) {
  auto st = static_cast<ucs_status_t>(ucs_status);
  if (st == UCS_OK) return Status::OK();
  return Status(StatusCode::kFabricError,
                what + ": UCX error " + std::to_string(ucs_status) + " (" + ucs_status_string(st) +
                    ")");
}

struct UcxFabric::Impl {
  struct Peer {
    ProcId id = 0;
    Buffer address;
    ucp_ep_h ep = nullptr;
    bool failed = false;
    bool failure_reported = false;
    uint64_t next_send_seq = 0;
    uint64_t next_recv_seq = 0;
    std::map<uint64_t, std::string> reorder;  // batches that arrived early
  };

  struct SendCtx {
    Impl* impl = nullptr;
    AmHeader hdr;
    std::string batch;                   // owned batch bytes
    std::shared_ptr<const void> keep;    // bulk: pins the source memory
    std::function<void(bool)> done;      // bulk completion
  };

  struct RecvCtx {
    Impl* impl = nullptr;
    ProcId src = 0;
    AmHeader hdr;
    std::string batch;  // batch destination
    size_t len = 0;
    bool bulk = false;
  };

  UcxFabricOptions opts;
  UcxFabric* owner = nullptr;
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  int efd = -1;
  FabricHandler* handler = nullptr;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::atomic<bool> sleeping{false};
  std::atomic<bool> pending{false};
  uint8_t key[16] = {};
  std::atomic<uint64_t> rejected{0};

  // Guarded by mu: outboxes and commands, written by any thread.
  std::mutex mu;
  std::unordered_map<ProcId, std::string> outbox;
  std::vector<std::function<void()>> commands;

  // Progress-thread state.
  std::unordered_map<ProcId, std::unique_ptr<Peer>> peers;
  std::unordered_map<ProcId, std::string> deferred;  // batches for peers we cannot reach yet
  size_t inflight = 0;
  std::vector<ProcId> failed_to_report;

  ~Impl() {
    if (worker) ucp_worker_destroy(worker);
    if (context) ucp_cleanup(context);
  }

  void Signal() {
    pending.store(true, std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_seq_cst)) ucp_worker_signal(worker);
  }

  Peer* PeerFor(ProcId id) {
    auto it = peers.find(id);
    return it == peers.end() ? nullptr : it->second.get();
  }

  static void OnEpError(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* p = static_cast<Peer*>(arg);
    if (!p->failed) {
      p->failed = true;
      MPIRAY_LOG(info, "fabric: connection to process {} failed: {}", p->id,
                 ucs_status_string(status));
    }
  }

  // Every endpoint handles peer failure. UCX 1.13 therefore never uses its shared-memory FIFOs
  // here (they are only offered without it): a process that dies halfway through writing into
  // a receiver's FIFO leaves a slot that is never completed and wedges every later message to
  // that receiver. Same-machine object bytes are copied through the object store instead.
  ucp_ep_h CreateEp(Peer& p) {
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(p.address.data());
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &Impl::OnEpError;
    ep.err_handler.arg = &p;
    ucp_ep_h h = nullptr;
    ucs_status_t st = ucp_ep_create(worker, &ep, &h);
    if (st != UCS_OK) {
      MPIRAY_LOG(error, "fabric: cannot connect to process {}: {}", p.id, ucs_status_string(st));
      return nullptr;
    }
    return h;
  }

  bool EnsureEp(Peer& p) {
    if (p.ep || p.failed) return p.ep != nullptr && !p.failed;
    p.ep = CreateEp(p);
    if (!p.ep) {
      p.failed = true;
      return false;
    }
    return true;
  }

  void CloseEp(ucp_ep_h& h) {
    if (!h) return;
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_EP_CLOSE_FLAG_FORCE;
    ucs_status_ptr_t r = ucp_ep_close_nbx(h, &rp);
    h = nullptr;
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
      auto deadline = Clock::now() + std::chrono::milliseconds(500);
      while (ucp_request_check_status(r) == UCS_INPROGRESS && Clock::now() < deadline) {
        ucp_worker_progress(worker);
      }
      ucp_request_free(r);
    }
  }

  static void SendDone(void* request, ucs_status_t status, void* user) {
    auto* ctx = static_cast<SendCtx*>(user);
    ctx->impl->FinishSend(ctx, status == UCS_OK);
    ucp_request_free(request);
  }

  void FinishSend(SendCtx* ctx, bool ok) {
    --inflight;
    if (ctx->done) ctx->done(ok);
    delete ctx;
  }

  void Launch(Peer& p, unsigned am_id, SendCtx* ctx, const void* data, size_t len) {
    ++inflight;
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.send = &Impl::SendDone;
    rp.user_data = ctx;
    ucs_status_ptr_t r = ucp_am_send_nbx(p.ep, am_id, &ctx->hdr, sizeof(AmHeader), data, len, &rp);
    if (r == nullptr) {
      FinishSend(ctx, true);
    } else if (UCS_PTR_IS_ERR(r)) {
      MPIRAY_LOG(warn, "fabric: send to process {} failed: {}", p.id,
                 ucs_status_string(UCS_PTR_STATUS(r)));
      FinishSend(ctx, false);
    }
  }

  void SendBatch(ProcId dest, std::string&& batch) {
    if (dest == owner->self()) {
      DeliverBatch(dest, batch.data(), batch.size());
      return;
    }
    Peer* p = PeerFor(dest);
    if (p == nullptr || (p->address.empty() && !p->failed)) {
      deferred[dest].append(batch);
      return;
    }
    if (!EnsureEp(*p)) return;  // dead peer: drop
    auto* ctx = new SendCtx;
    ctx->impl = this;
    ctx->hdr.src = owner->self();
    ctx->hdr.seq = p->next_send_seq++;
    std::memcpy(ctx->hdr.key, key, sizeof key);
    ctx->batch = std::move(batch);
    Launch(*p, kAmBatch, ctx, ctx->batch.data(), ctx->batch.size());
  }

  void DeliverBatch(ProcId src, const char* data, size_t len) {
    size_t off = 0;
    while (off + kFrameHeader <= len) {
      uint16_t type;
      uint32_t blen;
      std::memcpy(&type, data + off, 2);
      std::memcpy(&blen, data + off + 2, 4);
      off += kFrameHeader;
      if (off + blen > len) {
        MPIRAY_LOG(error, "fabric: truncated batch from process {}", src);
        return;
      }
      try {
        handler->OnMessage(src, static_cast<proto::Msg>(type), data + off, blen);
      } catch (const std::exception& e) {
        MPIRAY_LOG(error, "fabric: message {} from process {} rejected: {}", type, src, e.what());
      }
      off += blen;
    }
    handler->OnBatchEnd();
  }

  // Deliver batch `seq` from `p` now if it is next in order, else hold it back.
  void ArriveBatch(Peer& p, uint64_t seq, const char* data, size_t len) {
    if (seq != p.next_recv_seq) {
      p.reorder.emplace(seq, std::string(data, len));
      return;
    }
    DeliverBatch(p.id, data, len);
    ++p.next_recv_seq;
    for (auto it = p.reorder.begin(); it != p.reorder.end() && it->first == p.next_recv_seq;) {
      DeliverBatch(p.id, it->second.data(), it->second.size());
      ++p.next_recv_seq;
      it = p.reorder.erase(it);
    }
  }

  Peer& PeerForRecv(ProcId src) {
    auto& slot = peers[src];
    if (!slot) {  // a peer we have no address for yet (it will arrive via AddPeer)
      slot = std::make_unique<Peer>();
      slot->id = src;
    }
    return *slot;
  }

  static void RecvDone(void* request, ucs_status_t status, size_t, void* user) {
    auto* ctx = static_cast<RecvCtx*>(user);
    ctx->impl->FinishRecv(ctx, status == UCS_OK);
    if (request) ucp_request_free(request);
  }

  void FinishRecv(RecvCtx* ctx, bool ok) {
    if (ctx->bulk) {
      handler->OnBulkEnd(ctx->src, ctx->hdr.bulk, ctx->len, ok);
    } else if (ok) {
      ArriveBatch(PeerForRecv(ctx->src), ctx->hdr.seq, ctx->batch.data(), ctx->batch.size());
    } else {
      MPIRAY_LOG(error, "fabric: lost a batch from process {}", ctx->src);
    }
    delete ctx;
  }

  ucs_status_t StartRndv(RecvCtx* ctx, void* data_desc, void* dst, size_t len) {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.recv_am = &Impl::RecvDone;
    rp.user_data = ctx;
    ucs_status_ptr_t r = ucp_am_recv_data_nbx(worker, data_desc, dst, len, &rp);
    if (r == nullptr) {
      FinishRecv(ctx, true);
    } else if (UCS_PTR_IS_ERR(r)) {
      FinishRecv(ctx, false);
    }
    return UCS_OK;
  }

  // A message is acted on only if its header is ours and carries the session's key.
  bool Accept(const void* header, size_t header_len, AmHeader* hdr) {
    if (header_len == sizeof(AmHeader)) {
      std::memcpy(hdr, header, sizeof *hdr);
      if (SameKey(hdr->key, key)) return true;
    }
    uint64_t n = rejected.fetch_add(1) + 1;
    if ((n & (n - 1)) == 0) {  // 1st, 2nd, 4th, 8th, ...: visible, but no log flood
      MPIRAY_LOG(warn, "fabric: dropped {} message(s) without this session's key (last claims "
                 "to be from process {}): a process that did not join with the token",
                 n, header_len == sizeof(AmHeader) ? static_cast<int64_t>(hdr->src) : -1);
    }
    return false;
  }

  ucs_status_t Drop(void* data, const ucp_am_recv_param_t* param) {
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) ucp_am_data_release(worker, data);
    return UCS_OK;
  }

  static ucs_status_t OnAmBatch(void* arg, const void* header, size_t header_len, void* data,
                                size_t len, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<Impl*>(arg);
    AmHeader hdr;
    if (!self->Accept(header, header_len, &hdr)) return self->Drop(data, param);
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
      auto* ctx = new RecvCtx;
      ctx->impl = self;
      ctx->src = hdr.src;
      ctx->hdr = hdr;
      ctx->batch.resize(len);
      ctx->len = len;
      return self->StartRndv(ctx, data, ctx->batch.data(), len);
    }
    self->ArriveBatch(self->PeerForRecv(hdr.src), hdr.seq, static_cast<const char*>(data), len);
    return UCS_OK;
  }

  static ucs_status_t OnAmBulk(void* arg, const void* header, size_t header_len, void* data,
                               size_t len, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<Impl*>(arg);
    AmHeader hdr;
    if (!self->Accept(header, header_len, &hdr)) return self->Drop(data, param);
    uint8_t* dst = self->handler->OnBulkBegin(hdr.src, hdr.bulk, len);
    bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    if (dst == nullptr) {
      if (rndv) ucp_am_data_release(self->worker, data);
      return UCS_OK;
    }
    if (!rndv) {
      std::memcpy(dst, data, len);
      self->handler->OnBulkEnd(hdr.src, hdr.bulk, len, true);
      return UCS_OK;
    }
    auto* ctx = new RecvCtx;
    ctx->impl = self;
    ctx->src = hdr.src;
    ctx->hdr = hdr;
    ctx->len = len;
    ctx->bulk = true;
    return self->StartRndv(ctx, data, dst, len);
  }

  void RunCommandsAndFlush() {
    std::vector<std::function<void()>> cmds;
    std::unordered_map<ProcId, std::string> out;
    {
      std::lock_guard<std::mutex> lk(mu);
      pending.store(false, std::memory_order_seq_cst);
      cmds.swap(commands);
      out.swap(outbox);
    }
    for (auto& c : cmds) c();
    for (auto& [dest, batch] : out) {
      if (!batch.empty()) SendBatch(dest, std::move(batch));
    }
    ReportFailures();
  }

  void ReportFailures() {
    for (auto& [id, p] : peers) {
      if (p->failed && !p->failure_reported) {
        p->failure_reported = true;
        failed_to_report.push_back(id);
        // Sends still queued on the endpoints complete (with an error) when they close.
        CloseEp(p->ep);
      }
    }
    if (failed_to_report.empty()) return;
    auto ids = std::move(failed_to_report);
    failed_to_report.clear();
    for (ProcId id : ids) handler->OnPeerFailed(id, "connection error");
  }

  void Loop() {
    auto last_activity = Clock::now();
    auto next_tick = Clock::now() + std::chrono::milliseconds(opts.tick_ms);
    const auto spin = std::chrono::microseconds(opts.spin_us);
    while (!stop.load(std::memory_order_relaxed)) {
      RunCommandsAndFlush();
      bool progressed = false;
      // A steady stream of messages must not hold back the tick (heartbeats): progress in
      // bursts, then look at the clock.
      for (int burst = 0; ucp_worker_progress(worker) != 0; ++burst) {
        progressed = true;
        if ((burst & 63) == 63 && Clock::now() >= next_tick) break;
      }
      ReportFailures();
      auto now = Clock::now();
      if (now >= next_tick) {
        handler->OnTick();
        next_tick = now + std::chrono::milliseconds(opts.tick_ms);
      }
      if (progressed || pending.load(std::memory_order_seq_cst)) {
        last_activity = now;
        continue;
      }
      if (now - last_activity < spin) {
        sched_yield();
        continue;
      }
      ucs_status_t st = ucp_worker_arm(worker);
      if (st == UCS_ERR_BUSY) continue;
      sleeping.store(true, std::memory_order_seq_cst);
      if (pending.load(std::memory_order_seq_cst) || stop.load()) {
        sleeping.store(false);
        continue;
      }
      auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now).count();
      pollfd pfd{efd, POLLIN, 0};
      poll(&pfd, 1, static_cast<int>(std::max<int64_t>(wait_ms, 1)));
      sleeping.store(false, std::memory_order_seq_cst);
      last_activity = Clock::now();
    }
    Drain();
  }

  // Shutdown: send what is queued, wait (bounded) for sends to complete, close endpoints.
  void Drain() {
    RunCommandsAndFlush();
    auto deadline = Clock::now() + std::chrono::milliseconds(1000);
    while (inflight > 0 && Clock::now() < deadline) {
      ucp_worker_progress(worker);
    }
    for (auto& [id, p] : peers) CloseEp(p->ep);
    peers.clear();
  }
};

Result<std::unique_ptr<UcxFabric>> UcxFabric::Create(const UcxFabricOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;

  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return UcxStatus(st, "ucp_config_read");
  const char* user_devices = std::getenv("UCX_NET_DEVICES");
  if (!options.net_devices.empty() && (user_devices == nullptr || *user_devices == '\0')) {
    st = ucp_config_modify(config, "NET_DEVICES", options.net_devices.c_str());
    if (st != UCS_OK) {
      ucp_config_release(config);
      return UcxStatus(st, "setting UCX_NET_DEVICES=" + options.net_devices);
    }
  }
  // UCX's shared-memory transports (posix, sysv) are never used here (they are not offered to
  // endpoints with peer-failure handling, see docs/architecture.md "Fabric"), yet each worker
  // would create a segment under /dev/shm for them and unlink it only after set-up: a process
  // killed in between left `ucx_shm_posix_*` files behind. Leave them out unless the user
  // chose the transports (UCX_TLS).
  const char* user_tls = std::getenv("UCX_TLS");
  if (user_tls == nullptr || *user_tls == '\0') {
    st = ucp_config_modify(config, "TLS", "^posix,sysv");
    if (st != UCS_OK) {
      ucp_config_release(config);
      return UcxStatus(st, "setting UCX_TLS=^posix,sysv");
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  st = ucp_init(&params, config, &impl->context);
  ucp_config_release(config);
  if (st != UCS_OK) return UcxStatus(st, "ucp_init");

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;  // only the progress thread touches the worker
  st = ucp_worker_create(impl->context, &wp, &impl->worker);
  if (st != UCS_OK) return UcxStatus(st, "ucp_worker_create");
  st = ucp_worker_get_efd(impl->worker, &impl->efd);
  if (st != UCS_OK) return UcxStatus(st, "ucp_worker_get_efd");

  ucp_address_t* addr = nullptr;
  size_t addr_len = 0;
  st = ucp_worker_get_address(impl->worker, &addr, &addr_len);
  if (st != UCS_OK) return UcxStatus(st, "ucp_worker_get_address");
  Buffer address = Buffer::Copy(addr, addr_len);
  ucp_worker_release_address(impl->worker, addr);

  for (auto [id, cb] : {std::pair<unsigned, ucp_am_recv_callback_t>{kAmBatch, &Impl::OnAmBatch},
                        std::pair<unsigned, ucp_am_recv_callback_t>{kAmBulk, &Impl::OnAmBulk}}) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = id;
    hp.cb = cb;
    hp.arg = impl.get();
    st = ucp_worker_set_am_recv_handler(impl->worker, &hp);
    if (st != UCS_OK) return UcxStatus(st, "ucp_worker_set_am_recv_handler");
  }
  auto fabric = std::unique_ptr<UcxFabric>(new UcxFabric(std::move(impl)));
  fabric->address_ = std::move(address);
  return fabric;
}

UcxFabric::UcxFabric(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->owner = this; }

UcxFabric::~UcxFabric() { Stop(); }

void UcxFabric::set_session_token(const std::string& token) {
  static const char kContext[] = "mpiray fabric key v1";
  if (sodium_init() < 0) std::abort();
  crypto_generichash(impl_->key, sizeof impl_->key,
                     reinterpret_cast<const unsigned char*>(token.data()), token.size(),
                     reinterpret_cast<const unsigned char*>(kContext), sizeof kContext - 1);
}

uint64_t UcxFabric::rejected() const { return impl_->rejected.load(); }

void UcxFabric::Start(FabricHandler* handler) {
  impl_->handler = handler;
  impl_->thread = std::thread([this] { impl_->Loop(); });
}

void UcxFabric::Stop() {
  if (!impl_->thread.joinable()) return;
  impl_->stop.store(true);
  ucp_worker_signal(impl_->worker);
  impl_->thread.join();
}

void UcxFabric::RunOnProgressThread(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->commands.push_back(std::move(fn));
  }
  impl_->Signal();
}

void UcxFabric::Post(ProcId dest, proto::Msg type, const char* body, size_t len) {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    std::string& out = impl_->outbox[dest];
    auto t = static_cast<uint16_t>(type);
    auto l = static_cast<uint32_t>(len);
    char frame[kFrameHeader];
    std::memcpy(frame, &t, 2);
    std::memcpy(frame + 2, &l, 4);
    out.append(frame, kFrameHeader);
    out.append(body, len);
  }
  impl_->Signal();
}

void UcxFabric::SendBulk(ProcId dest, const proto::BulkHeader& h, const void* data, size_t len,
                         std::shared_ptr<const void> keepalive, std::function<void(bool)> done) {
  Impl* impl = impl_.get();
  RunOnProgressThread([impl, dest, h, data, len, keep = std::move(keepalive),
                       done = std::move(done)]() mutable {
    Impl::Peer* p = impl->PeerFor(dest);
    if (p == nullptr || p->address.empty() || !impl->EnsureEp(*p)) {
      if (done) done(false);
      return;
    }
    auto* ctx = new Impl::SendCtx;
    ctx->impl = impl;
    ctx->hdr.src = impl->owner->self();
    ctx->hdr.bulk = h;
    std::memcpy(ctx->hdr.key, impl->key, sizeof impl->key);
    ctx->keep = std::move(keep);
    ctx->done = std::move(done);
    impl->Launch(*p, kAmBulk, ctx, data, len);
  });
}

void UcxFabric::AddPeer(ProcId proc, const Buffer& address) {
  Impl* impl = impl_.get();
  RunOnProgressThread([impl, proc, address] {
    auto& slot = impl->peers[proc];
    if (!slot) {
      slot = std::make_unique<Impl::Peer>();
      slot->id = proc;
    }
    slot->address = address;
    auto it = impl->deferred.find(proc);
    if (it != impl->deferred.end()) {
      std::string batch = std::move(it->second);
      impl->deferred.erase(it);
      impl->SendBatch(proc, std::move(batch));
    }
  });
}

void UcxFabric::RemovePeer(ProcId proc) {
  Impl* impl = impl_.get();
  RunOnProgressThread([impl, proc] {
    impl->deferred.erase(proc);
    auto it = impl->peers.find(proc);
    if (it == impl->peers.end()) return;
    impl->CloseEp(it->second->ep);
    // Keep the record (marked failed) so late messages from it are not mistaken for a new peer.
    it->second->failed = true;
    it->second->failure_reported = true;
  });
}

void UcxFabric::Wake() { impl_->Signal(); }

}  // namespace mpiray
