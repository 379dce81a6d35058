#include "fetch.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "log.h"

namespace mpiray {

void Fetcher::RegisterHandlers(MessageRouter& router) {
  router.On<proto::Fetch>(proto::Msg::kFetch, [this](ProcId src, proto::Fetch&& f) { OnFetch(src, f); });
  router.On<proto::FetchFailed>(proto::Msg::kFetchFailed,
                                [this](ProcId, proto::FetchFailed&& f) { OnFetchFailed(f); });
  router.On<proto::BenchStream>(proto::Msg::kBenchStream,
                                [this](ProcId src, proto::BenchStream&& b) { OnBenchStream(src, b); });
}

Fetcher::Fetcher(Transport& transport, ShmStore& store, uint64_t chunk,
                 std::function<void(const ObjectId&)> on_fetched,
                 std::function<bool(ProcId)> same_machine)
    : transport_(transport),
      store_(store),
      chunk_(chunk),
      on_fetched_(std::move(on_fetched)),
      same_machine_(std::move(same_machine)) {}

uint64_t Fetcher::Begin(uint8_t* dst, uint64_t size, ProcId source) {
  std::lock_guard<std::mutex> lk(mu_);
  uint64_t id = ++next_;
  Transfer& t = transfers_[id];
  t.dst = dst;
  t.size = size;
  t.source = source;
  if (size == 0) {
    t.done = true;
    t.ok = true;
  } else if (dead_.count(source)) {
    t.done = true;
    t.error = "process " + std::to_string(source) + " serving the object is gone";
  }
  return id;
}

Status Fetcher::Await(uint64_t id) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return transfers_[id].done; });
  Transfer t = transfers_[id];
  transfers_.erase(id);
  if (t.ok) return Status::OK();
  return Status(StatusCode::kObjectLost, t.error);
}

Result<Buffer> Fetcher::Fetch(const proto::ObjectLoc& loc) {
  // One fetch per object per process; concurrent readers wait for it.
  {
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      auto it = inflight_.find(loc.id);
      if (it == inflight_.end()) break;
      auto cv = it->second;
      cv->wait(lk);
    }
    if (store_.Contains(loc.id)) {
      lk.unlock();
      return store_.Map(loc.id);
    }
    inflight_[loc.id] = std::make_shared<std::condition_variable>();
  }
  auto finish = [&] {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = inflight_.find(loc.id);
    if (it != inflight_.end()) {
      it->second->notify_all();
      inflight_.erase(it);
    }
  };
  auto w = store_.Create(loc.id, loc.size, /*wait=*/false);
  if (!w.ok()) {
    finish();
    if (w.status().code() != StatusCode::kObjectStoreFull) return w.status();
    // No room for a copy here (this node's memory is full of objects in use): read it
    // anyway, without keeping a copy.
    MPIRAY_LOG(debug, "reading object {} ({} bytes) without a local copy: {}", loc.id.Hex(),
               loc.size, w.status().message());
    return FetchUncached(loc);
  }
  WritableObject obj = std::move(w).value();
  Status st;
  Result<Buffer> local = Status(StatusCode::kNotFound, "");
  if (same_machine_ && same_machine_(loc.source)) local = store_.MapFrom(loc.node, loc.id);
  if (local.ok() && local->size() == obj.size) {
    // Another node of this machine: its file is right here (pinned while we copy).
    std::memcpy(obj.data, local->data(), obj.size);
  } else {
    uint64_t id = Begin(obj.data, obj.size, loc.source);
    SendMsg(transport_, loc.source, proto::Msg::kFetch, proto::Fetch{loc.id, id, loc.size});
    st = Await(id);
  }
  if (!st.ok()) {
    store_.Abort(obj);
    finish();
    return Status(StatusCode::kObjectLost, "fetching object " + loc.id.Hex() + " from node " +
                                               std::to_string(loc.node) + " failed: " + st.message());
  }
  auto view = store_.Seal(obj);
  finish();
  if (view.ok() && on_fetched_) on_fetched_(loc.id);
  return view;
}

Result<Buffer> Fetcher::FetchUncached(const proto::ObjectLoc& loc) {
  if (same_machine_ && same_machine_(loc.source)) {
    // The holder's file (or spill file) is on this machine: read it in place.
    auto local = store_.MapFrom(loc.node, loc.id);
    if (local.ok() && local->size() == loc.size) return local;
  }
  // Page-aligned private memory, so the payload's aligned buffers stay aligned.
  const size_t bytes = std::max<size_t>(4096, (loc.size + 4095) / 4096 * 4096);
  void* raw = std::aligned_alloc(4096, bytes);
  if (!raw) {
    return Status(StatusCode::kObjectStoreFull,
                  "no memory for object " + loc.id.Hex() + " (" + std::to_string(loc.size) +
                      " bytes): the object store and the heap are full");
  }
  std::shared_ptr<uint8_t> mem(static_cast<uint8_t*>(raw), [](uint8_t* p) { std::free(p); });
  uint64_t id = Begin(mem.get(), loc.size, loc.source);
  SendMsg(transport_, loc.source, proto::Msg::kFetch, proto::Fetch{loc.id, id, loc.size});
  Status st = Await(id);
  if (!st.ok()) {
    return Status(StatusCode::kObjectLost, "fetching object " + loc.id.Hex() + " from node " +
                                               std::to_string(loc.node) +
                                               " failed: " + st.message());
  }
  return Buffer(mem.get(), loc.size, std::shared_ptr<const void>(mem, mem.get()));
}

Result<double> Fetcher::MeasureStream(ProcId source, uint64_t bytes) {
  auto buf = std::make_unique<uint8_t[]>(bytes);
  std::memset(buf.get(), 0, bytes);  // fault the pages in before timing
  auto t0 = std::chrono::steady_clock::now();
  uint64_t id = Begin(buf.get(), bytes, source);
  SendMsg(transport_, source, proto::Msg::kBenchStream, proto::BenchStream{id, bytes});
  MPIRAY_RETURN_IF_ERROR(Await(id));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(bytes) / s / 1e9;
}

void Fetcher::Stream(ProcId dest, uint64_t transfer, const Buffer& data) {
  uint64_t total = data.size();
  for (uint64_t off = 0; off < total; off += chunk_) {
    uint64_t n = std::min<uint64_t>(chunk_, total - off);
    proto::BulkHeader h{transfer, off, total};
    transport_.SendBulk(dest, h, data.data() + off, n, data.owner(), nullptr);
  }
}

void Fetcher::OnFetch(ProcId src, const proto::Fetch& req) {
  auto view = store_.Map(req.id);
  if (!view.ok() || view->size() != req.size) {
    std::string why = view.ok() ? "size mismatch" : view.status().message();
    SendMsg(transport_, src, proto::Msg::kFetchFailed, proto::FetchFailed{req.transfer, why});
    return;
  }
  Stream(src, req.transfer, *view);
}

void Fetcher::OnBenchStream(ProcId src, const proto::BenchStream& req) {
  if (!bench_buf_ || bench_buf_->size() < req.bytes) {
    bench_buf_ = std::make_shared<std::vector<uint8_t>>(req.bytes, 1);
  }
  Buffer view(bench_buf_->data(), req.bytes, bench_buf_);
  Stream(src, req.transfer, view);
}

void Fetcher::OnFetchFailed(const proto::FetchFailed& f) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = transfers_.find(f.transfer);
  if (it == transfers_.end()) return;
  it->second.done = true;
  it->second.ok = false;
  it->second.error = f.message;
  cv_.notify_all();
}

uint8_t* Fetcher::OnBulkBegin(ProcId, const proto::BulkHeader& h, size_t len) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = transfers_.find(h.transfer);
  if (it == transfers_.end() || it->second.done) return nullptr;
  Transfer& t = it->second;
  if (h.total != t.size || h.offset + len > t.size) {
    t.done = true;
    t.error = "malformed chunk";
    cv_.notify_all();
    return nullptr;
  }
  return t.dst + h.offset;
}

void Fetcher::OnBulkEnd(ProcId, const proto::BulkHeader& h, size_t len, bool ok) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = transfers_.find(h.transfer);
  if (it == transfers_.end() || it->second.done) return;
  Transfer& t = it->second;
  if (!ok) {
    t.done = true;
    t.error = "transfer failed";
  } else {
    t.received += len;
    if (t.received >= t.size) {
      t.done = true;
      t.ok = true;
    }
  }
  if (t.done) cv_.notify_all();
}

void Fetcher::OnPeerFailed(ProcId proc) {
  std::lock_guard<std::mutex> lk(mu_);
  dead_.insert(proc);
  for (auto& [id, t] : transfers_) {
    if (t.source == proc && !t.done) {
      t.done = true;
      t.error = "process " + std::to_string(proc) + " serving the object died";
    }
  }
  cv_.notify_all();
}

void Fetcher::FailAll(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [id, t] : transfers_) {
    if (!t.done) {
      t.done = true;
      t.error = why;
    }
  }
  cv_.notify_all();
}

}  // namespace mpiray
