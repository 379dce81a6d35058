#include "shm_node.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "communicator.h"

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace mpiray::collective::detail {

namespace {

constexpr uint64_t kPage = 4096;

// A destination a little after its source within a 4 KiB page: memcpy's loads then alias the
// stores it just made and it runs at a third of the speed (2.8 against 7 GB/s here for 64 KiB
// from a slot, which starts on a page, into a numpy array, 16 bytes into one); the streaming
// loop below is not slowed.
bool LandsJustAhead(const void* dst, const void* src, size_t n) {
  auto diff = (reinterpret_cast<uintptr_t>(dst) - reinterpret_cast<uintptr_t>(src)) & (kPage - 1);
  return n >= kPage && diff != 0 && diff < 1024;
}

// Results of large operations are written with non-temporal stores: they go to memory without
// first reading the destination's lines (no read-for-ownership) and do not push the pipeline's
// buffers out of the cache. Small results stay cached for the caller, unless memcpy would be
// slowed (LandsJustAhead). Call StreamFence() before the result is published.
void CopyOut(void* dst, const void* src, size_t n, bool streaming) {
#if defined(__x86_64__)
  if ((streaming && n >= 256) || LandsJustAhead(dst, src, n)) {
    auto* d = static_cast<uint8_t*>(dst);
    auto* s = static_cast<const uint8_t*>(src);
    size_t head = (16 - (reinterpret_cast<uintptr_t>(d) & 15)) & 15;
    std::memcpy(d, s, head);
    d += head, s += head, n -= head;
    size_t blocks = n / 64;
    for (size_t i = 0; i < blocks; ++i, d += 64, s += 64) {
      __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16));
      __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 32));
      __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(d), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + 48), e);
    }
    std::memcpy(d, s, n % 64);
    return;
  }
#endif
  (void)streaming;
  std::memcpy(dst, src, n);
}

void StreamFence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}
uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct alignas(64) Line {
  std::atomic<uint64_t> v{0};
  char pad[64 - sizeof(std::atomic<uint64_t>)];
};

struct MsgHdr {
  uint64_t bytes;
  uint8_t dtype;
  uint8_t pad[7];
};

uint64_t EnvBytes(const char* name, uint64_t dflt, uint64_t lo, uint64_t hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  unsigned long long x = std::strtoull(v, &end, 10);
  if (end && (*end == 'k' || *end == 'K')) x <<= 10;
  else if (end && (*end == 'm' || *end == 'M')) x <<= 20;
  return std::clamp<uint64_t>(x, lo, hi);
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, long ns) {
  timespec ts{0, ns};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

}  // namespace

struct ShmNode::Header {
  std::atomic<uint32_t> attached{0};
  std::atomic<uint32_t> abort_state{0};  // 0 none, 1 being written, 2 published
  int32_t abort_code = 0;
  alignas(64) std::atomic<uint32_t> signal{0};    // futex word: bumped by Notify
  alignas(64) std::atomic<uint32_t> sleepers{0};  // members in Sleep
  alignas(64) char abort_msg[2048];
};

struct ShmNode::MemberCtl {
  Line in;    // chunks posted
  Line red;   // chunks whose slice this member reduced
  Line done;  // chunks this member finished reading
  OpDesc desc[2];
  char pad[64 - 2 * sizeof(OpDesc) % 64];
};

struct ShmNode::ChanCtl {
  Line sent;
  Line recvd;
  // MsgHdr hdr[p2p_slots] follows, then the data.
};

ShmConfig ShmConfigFromEnv() {
  ShmConfig c;
  if (const char* v = std::getenv("MPIRAY_COLLECTIVE_CHUNK_BYTES"); v && *v) {
    c.chunk = RoundUp(EnvBytes("MPIRAY_COLLECTIVE_CHUNK_BYTES", 0, 4096, 64 << 20), 64);
  }
  c.slots = static_cast<uint32_t>(EnvBytes("MPIRAY_COLLECTIVE_SLOTS", c.slots, 2, 64));
  c.small = EnvBytes("MPIRAY_COLLECTIVE_SMALL_BYTES", c.small, 0, 1 << 20);
  c.stream = EnvBytes("MPIRAY_COLLECTIVE_STREAM_BYTES", c.stream, 0, uint64_t{1} << 40);
  return c;
}

uint64_t AutoChunk(int members, uint32_t slots) {
  uint64_t per = (uint64_t{32} << 20) / (static_cast<uint64_t>(std::max(members, 1)) * std::max<uint32_t>(slots, 1));
  uint64_t chunk = uint64_t{256} << 10;
  while (chunk * 2 <= per && chunk < (uint64_t{1} << 20)) chunk *= 2;
  return chunk;
}

int CreateSegmentFd(const std::string& group) {
  std::string name = "mpiray-collective-" + group.substr(0, 200);
  return memfd_create(name.c_str(), MFD_CLOEXEC);
}

namespace {

struct Layout {
  size_t ctl_off, data_off, chan_off, chan_stride, total;
};

Layout ComputeLayout(int n, const ShmConfig& c, size_t header, size_t ctl, size_t chan_ctl) {
  Layout l{};
  l.ctl_off = RoundUp(header, kPage);
  l.data_off = RoundUp(l.ctl_off + ctl * static_cast<size_t>(n), kPage);
  size_t data = static_cast<size_t>(n) * c.slots * c.chunk;
  l.chan_off = l.data_off + data;
  l.chan_stride = RoundUp(chan_ctl + sizeof(MsgHdr) * c.p2p_slots, kPage) + c.p2p_slots * c.p2p_chunk;
  l.total = l.chan_off + static_cast<size_t>(n) * static_cast<size_t>(n) * l.chan_stride;
  return l;
}

}  // namespace

Result<std::unique_ptr<ShmNode>> ShmNode::Open(const ShmPlan& plan, Health& health) {
  const int n = static_cast<int>(plan.ranks.size());
  Layout l = ComputeLayout(n, plan.config, sizeof(Header), sizeof(MemberCtl), sizeof(ChanCtl));
  const bool leader = plan.local_index == 0;
  auto start = Clock::now();
  int fd = -1;
  if (leader) {
    fd = plan.own_fd;
    if (ftruncate(fd, static_cast<off_t>(l.total)) != 0) {
      return Status(StatusCode::kIoError, "collective group '" + health.group() +
                                              "': cannot size the node's shared memory (" +
                                              std::to_string(l.total >> 20) + " MiB): " + std::strerror(errno));
    }
  } else {
    std::string path = "/proc/" + std::to_string(plan.leader_pid) + "/fd/" + std::to_string(plan.leader_fd);
    fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      return Status(StatusCode::kIoError, "collective group '" + health.group() +
                                              "': cannot open the node leader's shared memory " + path +
                                              ": " + std::strerror(errno));
    }
    // The leader sizes the segment once it has the roster too: wait for that.
    Status st = health.Wait(
        [&] {
          struct stat sb{};
          return fstat(fd, &sb) == 0 && static_cast<size_t>(sb.st_size) >= l.total;
        },
        "joining the node's shared memory", start);
    if (!st.ok()) {
      close(fd);
      return st;
    }
  }
  void* base = mmap(nullptr, l.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  if (!leader) close(fd);
  if (base == MAP_FAILED) {
    return Status(StatusCode::kIoError, "collective group '" + health.group() +
                                            "': cannot map the node's shared memory: " + std::strerror(err));
  }
  auto node = std::unique_ptr<ShmNode>(new ShmNode(plan, health, base, l.total));
  node->hdr_->attached.fetch_add(1, std::memory_order_acq_rel);
  node->Notify();
  Status st = health.Wait(
      [&] { return node->hdr_->attached.load(std::memory_order_acquire) >= static_cast<uint32_t>(n); },
      "joining the node's shared memory", start);
  if (!st.ok()) return st;
  return node;
}

ShmNode::ShmNode(const ShmPlan& plan, Health& health, void* base, size_t bytes)
    : health_(health),
      ranks_(plan.ranks),
      n_(static_cast<int>(plan.ranks.size())),
      me_(plan.local_index),
      cfg_(plan.config),
      base_(base),
      bytes_(bytes),
      spin_(SpinIterations(static_cast<int>(plan.ranks.size()))),
      yield_us_(YieldMicros(static_cast<int>(plan.ranks.size()))) {
  Layout l = ComputeLayout(n_, cfg_, sizeof(Header), sizeof(MemberCtl), sizeof(ChanCtl));
  auto* b = static_cast<uint8_t*>(base);
  hdr_ = reinterpret_cast<Header*>(b);
  ctl_ = reinterpret_cast<MemberCtl*>(b + l.ctl_off);
  data_ = b + l.data_off;
  chans_ = b + l.chan_off;
  chan_stride_ = l.chan_stride;
  sent_.assign(static_cast<size_t>(n_), 0);
  recvd_.assign(static_cast<size_t>(n_), 0);
}

ShmNode::~ShmNode() { munmap(base_, bytes_); }

uint8_t* ShmNode::Slot(int member, uint64_t chunk) const {
  return data_ + (static_cast<size_t>(member) * cfg_.slots + chunk % cfg_.slots) * cfg_.chunk;
}

void ShmNode::Notify() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (hdr_->sleepers.load(std::memory_order_relaxed) != 0) {
    hdr_->signal.fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(&hdr_->signal);
  }
}

// Sleep until another member posts (Notify), unless `ready` already holds. Registering as a
// sleeper before the last look at the counters pairs with Notify's fence: a post either sees
// the sleeper (and wakes it) or is seen by `ready` (so no sleep). The timeout only bounds how
// long health checks wait.
template <class Ready>
void ShmNode::Sleep(Ready&& ready) {
  hdr_->sleepers.fetch_add(1, std::memory_order_seq_cst);
  uint32_t s = hdr_->signal.load(std::memory_order_seq_cst);
  if (!ready() && hdr_->abort_state.load(std::memory_order_acquire) != 2) {
    FutexWait(&hdr_->signal, s, 20 * 1000 * 1000);
  }
  hdr_->sleepers.fetch_sub(1, std::memory_order_seq_cst);
}

Status ShmNode::PollAbort() const {
  if (hdr_->abort_state.load(std::memory_order_acquire) != 2) return Status::OK();
  return Status(static_cast<StatusCode>(hdr_->abort_code), hdr_->abort_msg);
}

void ShmNode::PublishAbort(const Status& st) {
  uint32_t expected = 0;
  if (!hdr_->abort_state.compare_exchange_strong(expected, 1)) return;  // someone was first
  hdr_->abort_code = static_cast<int32_t>(st.code());
  std::snprintf(hdr_->abort_msg, sizeof hdr_->abort_msg, "%s", st.message().c_str());
  hdr_->abort_state.store(2, std::memory_order_release);
  // Wake sleepers so they see it now.
  hdr_->signal.fetch_add(1);
  FutexWakeAll(&hdr_->signal);
}

Status ShmNode::CheckDescs(const OpDesc& d) {
  const int my_rank = ranks_[static_cast<size_t>(me_)];
  for (int j = 0; j < n_; ++j) {
    if (j == me_) continue;
    const OpDesc& other = ctl_[j].desc[d.op_seq & 1];
    Status st = CompareDesc(health_.group(), d, my_rank, other, ranks_[static_cast<size_t>(j)]);
    if (!st.ok()) return health_.Fail(st);
  }
  return Status::OK();
}

// The pipeline. post(k, slot): copy this member's part of chunk k into its slot. mid(k, g):
// this member's reduction of chunk k (global chunk g), after every member posted it. consume(k,
// g): read chunk k, after every member posted (and, with a mid phase, reduced) it.
template <class Post, class Mid, class Consume>
Status ShmNode::Run(const OpDesc& d, uint64_t chunks, bool has_mid, Post&& post, Mid&& mid, Consume&& consume) {
  if (Status st = health_.broken(); !st.ok()) return st;
  const uint64_t base = next_chunk_;
  const uint64_t slots = cfg_.slots;
  MemberCtl& mine = ctl_[me_];
  mine.desc[d.op_seq & 1] = d;  // published by the release store of `in` below
  auto min_of = [&](Line MemberCtl::*field) {
    uint64_t m = UINT64_MAX;
    for (int j = 0; j < n_; ++j) m = std::min(m, (ctl_[j].*field).v.load(std::memory_order_acquire));
    return m;
  };
  uint64_t n_in = 0, n_mid = 0, n_out = 0;
  bool checked = false;
  auto start = Clock::now();
  auto last_check = start;
  Backoff backoff(spin_, yield_us_);
  // Whether a step below could run now (for sleeping without missing a post).
  auto can_progress = [&] {
    if (n_out < (has_mid ? n_mid : n_in) && min_of(has_mid ? &MemberCtl::red : &MemberCtl::in) > base + n_out) return true;
    if (has_mid && n_mid < n_in && min_of(&MemberCtl::in) > base + n_mid) return true;
    if (n_in < chunks) {
      uint64_t g = base + n_in;
      if (g < slots || min_of(&MemberCtl::done) >= g - slots + 1) return true;
    }
    return false;
  };
  uint64_t idle = 0;
  while (n_out < chunks) {
    bool progress = false;
    // Read (frees slots first).
    if (n_out < (has_mid ? n_mid : n_in)) {
      uint64_t g = base + n_out;
      if (min_of(has_mid ? &MemberCtl::red : &MemberCtl::in) > g) {
        if (!checked) {
          MPIRAY_RETURN_IF_ERROR(CheckDescs(d));
          checked = true;
        }
        consume(n_out, g);
        if (!has_mid) mine.red.v.store(g + 1, std::memory_order_release);
        mine.done.v.store(g + 1, std::memory_order_release);
        ++n_out;
        progress = true;
      }
    }
    // Reduce.
    if (has_mid && n_mid < n_in) {
      uint64_t g = base + n_mid;
      if (min_of(&MemberCtl::in) > g) {
        if (!checked) {
          MPIRAY_RETURN_IF_ERROR(CheckDescs(d));
          checked = true;
        }
        mid(n_mid, g);
        mine.red.v.store(g + 1, std::memory_order_release);
        ++n_mid;
        progress = true;
      }
    }
    // Post, when the slot's previous chunk has been read by everyone.
    if (n_in < chunks) {
      uint64_t g = base + n_in;
      if (g < slots || min_of(&MemberCtl::done) >= g - slots + 1) {
        post(n_in, Slot(me_, g));
        mine.in.v.store(g + 1, std::memory_order_release);
        ++n_in;
        progress = true;
      }
    }
    if (progress) {
      Notify();  // once per round of steps: sleepers re-check everything anyway
      backoff.Reset();
      idle = 0;
      continue;
    }
    if (hdr_->abort_state.load(std::memory_order_relaxed) == 2) return health_.Fail(PollAbort());
    if ((++idle & 15) == 0) {
      auto now = Clock::now();
      if (now - last_check > std::chrono::milliseconds(20)) {
        last_check = now;
        MPIRAY_RETURN_IF_ERROR(health_.Check(OpKindName(static_cast<OpKind>(d.kind)), start, false));
      }
    }
    backoff.Pause([&] { Sleep(can_progress); });
  }
  next_chunk_ = base + chunks;
  return Status::OK();
}

namespace {
auto NoMid = [](uint64_t, uint64_t) {};
}

Status ShmNode::AllReduce(const OpDesc& d, const void* in, void* out, size_t count, DType dtype, ReduceOp op,
                          int root_local, size_t wlo, size_t whi) {
  const size_t esz = kernels::DTypeSize(dtype);
  const size_t total = count * esz;
  const size_t C = cfg_.chunk;
  const uint64_t chunks = std::max<uint64_t>(1, (total + C - 1) / C);
  auto* src = static_cast<const uint8_t*>(in);
  auto* dst = static_cast<uint8_t*>(out);
  const bool receive = root_local < 0 || root_local == me_;
  const bool streaming = total >= cfg_.stream;
  auto chunk_len = [&](uint64_t k) { return std::min<size_t>(C, total - std::min<size_t>(total, k * C)); };
  auto post = [&](uint64_t k, uint8_t* slot) { std::memcpy(slot, src + k * C, chunk_len(k)); };
  // Copy bytes [lo, hi) of chunk k from `from` into the output, clipped to the window.
  auto deliver = [&](uint64_t k, const uint8_t* from, size_t lo, size_t hi) {
    size_t a = std::max(k * C + lo, wlo), b = std::min(k * C + hi, whi);
    if (a < b) CopyOut(dst + (a - wlo), from + (a - k * C), b - a, streaming);
  };
  if (total <= cfg_.small) {
    // One phase: everyone (who receives) reduces every member's chunk, in member order so that
    // all members compute bit-identical results.
    const bool whole = wlo == 0 && whi >= total;
    auto consume = [&](uint64_t k, uint64_t g) {
      if (!receive) return;
      size_t len = chunk_len(k);
      uint8_t* acc = whole ? dst + k * C : nullptr;
      std::vector<uint8_t> scratch;
      if (!whole) {
        scratch.resize(len);
        acc = scratch.data();
      }
      std::memcpy(acc, Slot(0, g), len);
      for (int j = 1; j < n_; ++j) kernels::ReduceInto(op, dtype, acc, Slot(j, g), len / esz);
      if (!whole) deliver(k, acc, 0, len);
    };
    return Run(d, chunks, false, post, NoMid, consume);
  }
  auto slice = [&](size_t len, int j, size_t* lo, size_t* hi) {
    size_t elems = len / esz;
    *lo = elems * static_cast<size_t>(j) / static_cast<size_t>(n_) * esz;
    *hi = elems * static_cast<size_t>(j + 1) / static_cast<size_t>(n_) * esz;
  };
  auto mid = [&](uint64_t k, uint64_t g) {
    size_t lo, hi;
    slice(chunk_len(k), me_, &lo, &hi);
    if (hi == lo) return;
    uint8_t* acc = Slot(me_, g) + lo;
    for (int j = 0; j < n_; ++j) {
      if (j != me_) kernels::ReduceInto(op, dtype, acc, Slot(j, g) + lo, (hi - lo) / esz);
    }
  };
  auto consume = [&](uint64_t k, uint64_t g) {
    if (!receive) return;
    size_t len = chunk_len(k);
    for (int j = 0; j < n_; ++j) {
      size_t lo, hi;
      slice(len, j, &lo, &hi);
      if (hi > lo) deliver(k, Slot(j, g), lo, hi);
    }
  };
  Status st = Run(d, chunks, true, post, mid, consume);
  StreamFence();  // (also after a CopyOut that streamed because LandsJustAhead)
  return st;
}

Status ShmNode::Broadcast(const OpDesc& d, void* data, size_t bytes, int src_local, int only_local, size_t wlo,
                          size_t whi) {
  const size_t C = cfg_.chunk;
  const uint64_t chunks = std::max<uint64_t>(1, (bytes + C - 1) / C);
  auto* p = static_cast<uint8_t*>(data);
  auto chunk_len = [&](uint64_t k) { return std::min<size_t>(C, bytes - std::min<size_t>(bytes, k * C)); };
  auto post = [&](uint64_t k, uint8_t* slot) {
    if (me_ == src_local) std::memcpy(slot, p + k * C, chunk_len(k));
  };
  const bool receive = me_ != src_local && (only_local < 0 || only_local == me_);
  const bool streaming = bytes >= cfg_.stream;
  auto consume = [&](uint64_t k, uint64_t g) {
    if (!receive) return;
    size_t a = std::max(k * C, wlo), b = std::min(k * C + chunk_len(k), whi);
    if (a < b) CopyOut(p + (a - wlo), Slot(src_local, g) + (a - k * C), b - a, streaming);
  };
  Status st = Run(d, chunks, false, post, NoMid, consume);
  StreamFence();  // (also after a CopyOut that streamed because LandsJustAhead)
  return st;
}

Status ShmNode::AllGather(const OpDesc& d, const void* in, size_t bytes, void* out,
                          const std::vector<size_t>& offsets) {
  const size_t C = cfg_.chunk;
  const uint64_t chunks = std::max<uint64_t>(1, (bytes + C - 1) / C);
  auto* src = static_cast<const uint8_t*>(in);
  auto* dst = static_cast<uint8_t*>(out);
  auto chunk_len = [&](uint64_t k) { return std::min<size_t>(C, bytes - std::min<size_t>(bytes, k * C)); };
  auto post = [&](uint64_t k, uint8_t* slot) { std::memcpy(slot, src + k * C, chunk_len(k)); };
  const bool streaming = bytes * static_cast<size_t>(n_) >= cfg_.stream;
  auto consume = [&](uint64_t k, uint64_t g) {
    size_t len = chunk_len(k);
    for (int j = 0; j < n_; ++j) {
      uint8_t* to = dst + offsets[static_cast<size_t>(j)] + k * C;
      const uint8_t* from = j == me_ ? src + k * C : Slot(j, g);
      if (to != from && len) CopyOut(to, from, len, streaming);
    }
  };
  Status st = Run(d, chunks, false, post, NoMid, consume);
  StreamFence();  // (also after a CopyOut that streamed because LandsJustAhead)
  return st;
}

Status ShmNode::Barrier(const OpDesc& d) {
  return Run(d, 1, false, [](uint64_t, uint8_t*) {}, NoMid, [](uint64_t, uint64_t) {});
}

Status ShmNode::Send(int dst_local, const void* data, size_t bytes, DType dtype) {
  if (Status st = health_.broken(); !st.ok()) return st;
  uint8_t* chan = chans_ + (static_cast<size_t>(me_) * static_cast<size_t>(n_) + static_cast<size_t>(dst_local)) * chan_stride_;
  auto* c = reinterpret_cast<ChanCtl*>(chan);
  auto* hdrs = reinterpret_cast<MsgHdr*>(chan + sizeof(ChanCtl));
  uint8_t* slots = chan + RoundUp(sizeof(ChanCtl) + sizeof(MsgHdr) * cfg_.p2p_slots, kPage);
  const size_t C = cfg_.p2p_chunk;
  const uint64_t chunks = std::max<uint64_t>(1, (bytes + C - 1) / C);
  uint64_t& sent = sent_[static_cast<size_t>(dst_local)];
  auto* p = static_cast<const uint8_t*>(data);
  auto start = Clock::now();
  for (uint64_t k = 0; k < chunks; ++k) {
    auto room = [&] { return sent - c->recvd.v.load(std::memory_order_acquire) < cfg_.p2p_slots; };
    MPIRAY_RETURN_IF_ERROR(health_.Wait(room, "send", start, [&] { Sleep(room); }, spin_, yield_us_));
    uint64_t s = sent % cfg_.p2p_slots;
    if (k == 0) hdrs[s] = MsgHdr{bytes, static_cast<uint8_t>(dtype), {}};
    size_t len = std::min<size_t>(C, bytes - k * C);
    if (len) std::memcpy(slots + s * C, p + k * C, len);
    c->sent.v.store(++sent, std::memory_order_release);
    Notify();
  }
  return Status::OK();
}

Status ShmNode::Recv(int src_local, void* data, size_t bytes, DType dtype) {
  if (Status st = health_.broken(); !st.ok()) return st;
  uint8_t* chan = chans_ + (static_cast<size_t>(src_local) * static_cast<size_t>(n_) + static_cast<size_t>(me_)) * chan_stride_;
  auto* c = reinterpret_cast<ChanCtl*>(chan);
  auto* hdrs = reinterpret_cast<MsgHdr*>(chan + sizeof(ChanCtl));
  uint8_t* slots = chan + RoundUp(sizeof(ChanCtl) + sizeof(MsgHdr) * cfg_.p2p_slots, kPage);
  const size_t C = cfg_.p2p_chunk;
  const uint64_t chunks = std::max<uint64_t>(1, (bytes + C - 1) / C);
  uint64_t& recvd = recvd_[static_cast<size_t>(src_local)];
  auto* p = static_cast<uint8_t*>(data);
  auto start = Clock::now();
  for (uint64_t k = 0; k < chunks; ++k) {
    auto arrived = [&] { return c->sent.v.load(std::memory_order_acquire) > recvd; };
    MPIRAY_RETURN_IF_ERROR(health_.Wait(arrived, "recv", start, [&] { Sleep(arrived); }, spin_, yield_us_));
    uint64_t s = recvd % cfg_.p2p_slots;
    if (k == 0) {
      const MsgHdr& h = hdrs[s];
      if (h.bytes != bytes || h.dtype != static_cast<uint8_t>(dtype)) {
        return health_.Fail(Status(
            StatusCode::kInvalidArgument,
            "collective group '" + health_.group() + "': rank " + std::to_string(ranks_[static_cast<size_t>(me_)]) +
                " receives " + std::to_string(bytes / kernels::DTypeSize(dtype)) + " " + DTypeName(dtype) +
                " elements from rank " + std::to_string(ranks_[static_cast<size_t>(src_local)]) + ", which sent " +
                std::to_string(h.bytes / kernels::DTypeSize(static_cast<DType>(h.dtype))) + " " +
                DTypeName(static_cast<DType>(h.dtype)) + " elements; the group is unusable now"));
      }
    }
    size_t len = std::min<size_t>(C, bytes - k * C);
    if (len) CopyOut(p + k * C, slots + s * C, len, false);
    c->recvd.v.store(++recvd, std::memory_order_release);
    Notify();
  }
  StreamFence();
  return Status::OK();
}

}  // namespace mpiray::collective::detail
