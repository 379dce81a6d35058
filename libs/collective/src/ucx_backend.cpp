// The "ucx" backend: shared memory among the members of a node (ShmNode), UCX among the nodes'
// leaders (NetLink), hierarchical algorithms on top:
//
//   allreduce:     node reduce to leader (shm) -> leaders all-reduce (UCX: recursive doubling
//                  up to 64 KiB, ring reduce-scatter + all-gather above) -> node broadcast (shm)
//   reduce:        node reduce to leader -> leaders binomial reduce -> leader to root (shm)
//   broadcast:     root's node (shm) -> leaders binomial broadcast -> other nodes (shm)
//   allgather:     node all-gather (shm) -> leaders ring all-gather -> node broadcast (shm)
//   reducescatter: node reduce to leader -> leaders all-reduce -> node scatter (shm)
//   barrier:       node barrier -> leaders barrier -> node barrier
//   send/recv:     the pair's shared-memory channel on a node, tagged UCX messages across
//
// One-node groups never create a UCX worker.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <msgpack.hpp>

#include "communicator.h"
#include "health.h"
#include "mpiray/core/api.h"
#include "net_link.h"
#include "op_desc.h"
#include "shm_node.h"

namespace mpiray::collective::detail {

namespace {

struct MemberInfo {
  int rank = 0;
  int pid = 0;
  uint64_t start_time = 0;
  std::string host;
  std::string node;
  int fd = -1;
  uint64_t chunk = 0;
  uint32_t slots = 0;
  uint64_t small = 0;
  MSGPACK_DEFINE(rank, pid, start_time, host, node, fd, chunk, slots, small)
};

template <class T>
std::string Pack(const T& v) {
  msgpack::sbuffer sb;
  msgpack::pack(sb, v);
  return std::string(sb.data(), sb.size());
}

template <class T>
Result<T> Unpack(const std::string& s, const char* what) {
  try {
    auto oh = msgpack::unpack(s.data(), s.size());
    return oh.get().as<T>();
  } catch (const std::exception& e) {
    return Status(StatusCode::kInvalidArgument, std::string("collective rendezvous: bad ") + what + ": " + e.what());
  }
}

constexpr size_t kRecursiveDoublingMax = 64 << 10;

size_t NetPieceFromEnv() {
  const char* v = std::getenv("MPIRAY_COLLECTIVE_NET_PIECE_BYTES");
  if (v && *v) return std::clamp<size_t>(std::strtoull(v, nullptr, 10), 4096, size_t{64} << 20) / 64 * 64;
  return size_t{1} << 20;
}

std::string NodeKey(const GroupOptions& o, const std::string& host) {
  if (!o.node_key.empty()) return o.node_key;
  if (mpiray::IsInitialized()) {
    auto ctx = mpiray::detail::CurrentContext();
    return ctx.job_id + "/node-" + std::to_string(ctx.node);
  }
  return host;
}

class UcxCommunicator final : public Communicator {
 public:
  UcxCommunicator(const GroupOptions& o, std::vector<MemberInfo> members)
      : opts_(o), rank_(o.rank), world_(o.world_size), members_(std::move(members)) {}

  ~UcxCommunicator() override {
    // Leave in an order that keeps the others' last reads valid: the shared segment stays
    // mapped by the others (it is freed with its last mapping); the UCX worker flushes.
    shm_.reset();
    net_.reset();
  }

  Status Setup(const Connector::Exchange& exchange, int own_fd) {
    // Topology: nodes in order of their lowest rank; the lowest rank of a node leads it.
    std::map<std::string, int> node_index;
    node_of_.assign(static_cast<size_t>(world_), 0);
    for (int r = 0; r < world_; ++r) {
      auto [it, fresh] = node_index.emplace(members_[static_cast<size_t>(r)].node, static_cast<int>(nodes_.size()));
      if (fresh) nodes_.emplace_back();
      nodes_[static_cast<size_t>(it->second)].push_back(r);
      node_of_[static_cast<size_t>(r)] = it->second;
    }
    local_of_.assign(static_cast<size_t>(world_), 0);
    for (auto& ranks : nodes_) {
      for (size_t i = 0; i < ranks.size(); ++i) local_of_[static_cast<size_t>(ranks[i])] = static_cast<int>(i);
    }
    my_node_ = node_of_[static_cast<size_t>(rank_)];
    my_local_ = local_of_[static_cast<size_t>(rank_)];
    const MemberInfo& me = members_[static_cast<size_t>(rank_)];

    // Members on this host are watched through /proc. MPIRAY_COLLECTIVE_WATCH_OTHER_NODES=0
    // watches only this node's members, as if every node were another host (tests of the
    // cross-host path: failures must then arrive over UCX).
    const char* watch_env = std::getenv("MPIRAY_COLLECTIVE_WATCH_OTHER_NODES");
    const bool watch_other_nodes = !(watch_env && std::string(watch_env) == "0");
    std::vector<PeerProcess> peers;
    for (const auto& m : members_) {
      if (m.rank == rank_) continue;
      PeerProcess p;
      p.rank = m.rank;
      p.id = ProcessIdentity{m.pid, m.start_time, m.host};
      p.same_host = m.host == me.host && (watch_other_nodes || m.node == me.node);
      p.where = "pid " + std::to_string(m.pid) + " on host " + m.host.substr(0, m.host.find('/')) + ", node " +
                std::to_string(node_of_[static_cast<size_t>(m.rank)]);
      peers.push_back(std::move(p));
    }
    health_ = std::make_unique<Health>(opts_.name, rank_, EffectiveTimeoutMs(opts_), std::move(peers));
    health_->SetTransportHooks(
        [this]() -> Status {
          if (shm_) MPIRAY_RETURN_IF_ERROR(shm_->PollAbort());
          if (net_) return net_->Poll();
          return Status::OK();
        },
        [this](const Status& st) {
          if (net_) net_->SendAbort(st);
          if (shm_) shm_->PublishAbort(st);
        });

    if (nodes_.size() > 1) {
      // Processes busy on this host during a collective: this node's members (the others are
      // elsewhere, or at least not counted on to share our CPUs).
      const int busy = static_cast<int>(nodes_[static_cast<size_t>(my_node_)].size());
      MPIRAY_ASSIGN_OR_RETURN(net_, NetLink::Create(*health_, rank_, world_, NetPieceFromEnv(), SpinIterations(busy),
                                                    YieldIterations(busy)));
      MPIRAY_ASSIGN_OR_RETURN(auto addresses, exchange(1, net_->address()));
      std::vector<int> eager;
      if (my_local_ == 0) {
        for (auto& n : nodes_) eager.push_back(n[0]);
      }
      MPIRAY_RETURN_IF_ERROR(net_->SetPeers(addresses, eager));
    }
    const auto& mine = nodes_[static_cast<size_t>(my_node_)];
    if (mine.size() > 1) {
      const MemberInfo& leader = members_[static_cast<size_t>(mine[0])];
      ShmPlan plan;
      plan.ranks = mine;
      plan.local_index = my_local_;
      plan.leader_pid = leader.pid;
      plan.leader_fd = leader.fd;
      plan.own_fd = own_fd;
      plan.config.chunk = leader.chunk;
      plan.config.slots = leader.slots;
      plan.config.small = leader.small;
      plan.config.stream = ShmConfigFromEnv().stream;  // local choice, not part of the protocol
      MPIRAY_ASSIGN_OR_RETURN(shm_, ShmNode::Open(plan, *health_));
    }
    return Status::OK();
  }

  // ---------------------------------------------------------------- operations

  Status AllReduce(void* data, size_t count, DType dtype, ReduceOp op) override {
    OpDesc d = Desc(OpKind::kAllReduce, count, dtype, op, -1);
    if (!Multi()) return shm_ ? shm_->AllReduce(Phase(d, 0), data, data, count, dtype, op, -1) : Status::OK();
    const size_t bytes = count * kernels::DTypeSize(dtype);
    if (shm_) MPIRAY_RETURN_IF_ERROR(shm_->AllReduce(Phase(d, 1), data, data, count, dtype, op, 0));
    if (Leader()) MPIRAY_RETURN_IF_ERROR(NetAllReduce(d, data, count, dtype, op));
    if (shm_) MPIRAY_RETURN_IF_ERROR(shm_->Broadcast(Phase(d, 2), data, bytes, 0));
    return Status::OK();
  }

  Status Reduce(void* data, size_t count, DType dtype, int root, ReduceOp op) override {
    OpDesc d = Desc(OpKind::kReduce, count, dtype, op, root);
    const int root_local = local_of_[static_cast<size_t>(root)];
    if (!Multi()) return shm_ ? shm_->AllReduce(Phase(d, 0), data, data, count, dtype, op, root_local) : Status::OK();
    const size_t bytes = count * kernels::DTypeSize(dtype);
    const int root_node = node_of_[static_cast<size_t>(root)];
    void* acc = data;
    if (Leader() && rank_ != root) {
      scratch_.resize(bytes);
      acc = scratch_.data();
    }
    if (shm_) {
      MPIRAY_RETURN_IF_ERROR(shm_->AllReduce(Phase(d, 1), data, acc, count, dtype, op, 0));
    } else if (acc != data) {
      std::memcpy(acc, data, bytes);
    }
    if (Leader()) MPIRAY_RETURN_IF_ERROR(NetReduce(d, acc, count, dtype, op, root_node));
    if (my_node_ == root_node && root_local != 0) {
      MPIRAY_RETURN_IF_ERROR(shm_->Broadcast(Phase(d, 2), rank_ == root ? data : acc, bytes, 0, root_local));
    }
    return Status::OK();
  }

  Status Broadcast(void* data, size_t count, DType dtype, int root) override {
    OpDesc d = Desc(OpKind::kBroadcast, count, dtype, ReduceOp::kSum, root);
    const size_t bytes = count * kernels::DTypeSize(dtype);
    const int root_local = local_of_[static_cast<size_t>(root)];
    if (!Multi()) return shm_ ? shm_->Broadcast(Phase(d, 0), data, bytes, root_local) : Status::OK();
    const int root_node = node_of_[static_cast<size_t>(root)];
    if (my_node_ == root_node && shm_) MPIRAY_RETURN_IF_ERROR(shm_->Broadcast(Phase(d, 1), data, bytes, root_local));
    if (Leader()) MPIRAY_RETURN_IF_ERROR(NetBroadcast(d, data, bytes, root_node));
    if (my_node_ != root_node && shm_) MPIRAY_RETURN_IF_ERROR(shm_->Broadcast(Phase(d, 2), data, bytes, 0));
    return Status::OK();
  }

  Status AllGather(const void* input, void* output, size_t count, DType dtype) override {
    OpDesc d = Desc(OpKind::kAllGather, count, dtype, ReduceOp::kSum, -1);
    const size_t bb = count * kernels::DTypeSize(dtype);
    auto* out = static_cast<uint8_t*>(output);
    const auto& mine = nodes_[static_cast<size_t>(my_node_)];
    if (shm_) {
      std::vector<size_t> offsets;
      for (int r : mine) offsets.push_back(static_cast<size_t>(r) * bb);
      MPIRAY_RETURN_IF_ERROR(shm_->AllGather(Phase(d, Multi() ? 1 : 0), input, bb, out, offsets));
    } else if (out + static_cast<size_t>(rank_) * bb != input && bb) {
      std::memcpy(out + static_cast<size_t>(rank_) * bb, input, bb);
    }
    if (!Multi()) return Status::OK();
    if (Leader()) MPIRAY_RETURN_IF_ERROR(NetAllGather(d, out, bb));
    if (shm_) MPIRAY_RETURN_IF_ERROR(shm_->Broadcast(Phase(d, 2), out, bb * static_cast<size_t>(world_), 0));
    return Status::OK();
  }

  Status ReduceScatter(const void* input, void* output, size_t count, DType dtype, ReduceOp op) override {
    OpDesc d = Desc(OpKind::kReduceScatter, count, dtype, op, -1);
    const size_t bb = count * kernels::DTypeSize(dtype);
    const size_t total_count = count * static_cast<size_t>(world_);
    const size_t wlo = static_cast<size_t>(rank_) * bb, whi = wlo + bb;
    if (!Multi()) {
      if (shm_) return shm_->AllReduce(Phase(d, 0), input, output, total_count, dtype, op, -1, wlo, whi);
      if (bb) std::memmove(output, static_cast<const uint8_t*>(input) + wlo, bb);
      return Status::OK();
    }
    void* acc = nullptr;
    if (Leader()) {
      scratch_.resize(bb * static_cast<size_t>(world_));
      acc = scratch_.data();
    }
    if (shm_) {
      MPIRAY_RETURN_IF_ERROR(shm_->AllReduce(Phase(d, 1), input, Leader() ? acc : output, total_count, dtype, op, 0));
    } else {
      std::memcpy(acc, input, bb * static_cast<size_t>(world_));
    }
    if (Leader()) {
      MPIRAY_RETURN_IF_ERROR(NetAllReduce(d, acc, total_count, dtype, op));
      if (bb) std::memcpy(output, static_cast<uint8_t*>(acc) + wlo, bb);
    }
    if (shm_) {
      MPIRAY_RETURN_IF_ERROR(shm_->Broadcast(Phase(d, 2), Leader() ? acc : output, bb * static_cast<size_t>(world_),
                                             0, -1, wlo, whi));
    }
    return Status::OK();
  }

  Status Barrier() override {
    OpDesc d = Desc(OpKind::kBarrier, 0, DType::kUInt8, ReduceOp::kSum, -1);
    if (!Multi()) return shm_ ? shm_->Barrier(Phase(d, 0)) : Status::OK();
    if (shm_) MPIRAY_RETURN_IF_ERROR(shm_->Barrier(Phase(d, 1)));
    if (Leader()) {
      uint8_t one = 1;
      MPIRAY_RETURN_IF_ERROR(NetAllReduce(d, &one, 1, DType::kUInt8, ReduceOp::kMax));
    }
    if (shm_) MPIRAY_RETURN_IF_ERROR(shm_->Barrier(Phase(d, 2)));
    return Status::OK();
  }

  Status Send(const void* data, size_t count, DType dtype, int dst) override {
    if (Status st = health_->broken(); !st.ok()) return st;
    const size_t bytes = count * kernels::DTypeSize(dtype);
    if (node_of_[static_cast<size_t>(dst)] == my_node_) {
      return shm_->Send(local_of_[static_cast<size_t>(dst)], data, bytes, dtype);
    }
    uint64_t header[2] = {bytes, static_cast<uint64_t>(dtype)};
    std::vector<NetLink::Op*> ops;
    MPIRAY_RETURN_IF_ERROR(net_->PostSend(dst, Stream::kP2p, header, sizeof header, &ops));
    MPIRAY_RETURN_IF_ERROR(net_->PostSend(dst, Stream::kP2p, data, bytes, &ops));
    return net_->Wait(ops, "send", Clock::now());
  }

  Status Recv(void* data, size_t count, DType dtype, int src) override {
    if (Status st = health_->broken(); !st.ok()) return st;
    const size_t bytes = count * kernels::DTypeSize(dtype);
    if (node_of_[static_cast<size_t>(src)] == my_node_) {
      return shm_->Recv(local_of_[static_cast<size_t>(src)], data, bytes, dtype);
    }
    auto start = Clock::now();
    uint64_t header[2] = {0, 0};
    std::vector<NetLink::Op*> ops;
    MPIRAY_RETURN_IF_ERROR(net_->PostRecv(src, Stream::kP2p, header, sizeof header, &ops));
    MPIRAY_RETURN_IF_ERROR(net_->Wait(ops, "recv", start));
    if (header[0] != bytes || header[1] != static_cast<uint64_t>(dtype)) {
      auto sent_dtype = static_cast<DType>(header[1]);
      return health_->Fail(Status(
          StatusCode::kInvalidArgument,
          "collective group '" + opts_.name + "': rank " + std::to_string(rank_) + " receives " +
              std::to_string(count) + " " + DTypeName(dtype) + " elements from rank " + std::to_string(src) +
              ", which sent " + std::to_string(header[0] / kernels::DTypeSize(sent_dtype)) + " " +
              DTypeName(sent_dtype) + " elements; the group is unusable now"));
    }
    MPIRAY_RETURN_IF_ERROR(net_->PostRecv(src, Stream::kP2p, data, bytes, &ops));
    return net_->Wait(ops, "recv", start);
  }

 private:
  bool Multi() const { return nodes_.size() > 1; }
  bool Leader() const { return my_local_ == 0; }
  int N() const { return static_cast<int>(nodes_.size()); }
  int LeadOf(int node) const { return nodes_[static_cast<size_t>((node % N() + N()) % N())][0]; }

  OpDesc Desc(OpKind kind, size_t count, DType dtype, ReduceOp op, int root) {
    OpDesc d;
    d.kind = static_cast<uint8_t>(kind);
    d.count = count;
    d.dtype = static_cast<uint8_t>(dtype);
    d.reduce_op = static_cast<uint8_t>(op);
    d.root = root;
    return d;
  }
  // Each shared-memory step gets the node's next step number (all local members count alike).
  OpDesc Phase(OpDesc d, uint8_t phase) {
    d.phase = phase;
    d.op_seq = shm_seq_++;
    return d;
  }

  // Leaders agree on the operation before any data moves: each sends its descriptor to the next
  // leader and checks the previous one's (equal neighbours all round means all equal).
  Status NetCheck(const OpDesc& user, Clock::time_point start) {
    OpDesc d = user;
    d.op_seq = net_seq_++;
    OpDesc prev_desc;
    std::vector<NetLink::Op*> ops;
    MPIRAY_RETURN_IF_ERROR(net_->PostSend(LeadOf(my_node_ + 1), Stream::kDesc, &d, sizeof d, &ops));
    MPIRAY_RETURN_IF_ERROR(net_->PostRecv(LeadOf(my_node_ - 1), Stream::kDesc, &prev_desc, sizeof prev_desc, &ops));
    MPIRAY_RETURN_IF_ERROR(net_->Wait(ops, OpKindName(static_cast<OpKind>(d.kind)), start));
    Status st = CompareDesc(opts_.name, d, rank_, prev_desc, LeadOf(my_node_ - 1));
    if (!st.ok()) return health_->Fail(st);
    return Status::OK();
  }

  Status Exchange(int peer_send, const void* sbuf, size_t sbytes, int peer_recv, void* rbuf, size_t rbytes,
                  const char* what, Clock::time_point start) {
    std::vector<NetLink::Op*> ops;
    if (peer_recv >= 0) MPIRAY_RETURN_IF_ERROR(net_->PostRecv(peer_recv, Stream::kData, rbuf, rbytes, &ops));
    if (peer_send >= 0) MPIRAY_RETURN_IF_ERROR(net_->PostSend(peer_send, Stream::kData, sbuf, sbytes, &ops));
    return net_->Wait(ops, what, start);
  }

  Status NetAllReduce(const OpDesc& d, void* data, size_t count, DType dtype, ReduceOp op) {
    auto start = Clock::now();
    MPIRAY_RETURN_IF_ERROR(NetCheck(d, start));
    const int n = N(), me = my_node_;
    const size_t esz = kernels::DTypeSize(dtype), bytes = count * esz;
    auto* buf = static_cast<uint8_t*>(data);
    const char* what = "allreduce";
    if (bytes <= kRecursiveDoublingMax || count < static_cast<size_t>(n)) {
      // Recursive doubling; with n not a power of two, the first 2*rem nodes pair up first.
      net_tmp_.resize(bytes);
      int p = 1;
      while (p * 2 <= n) p *= 2;
      const int rem = n - p;
      int vrank;
      if (me < 2 * rem) {
        if (me % 2 == 0) {
          MPIRAY_RETURN_IF_ERROR(Exchange(LeadOf(me + 1), buf, bytes, -1, nullptr, 0, what, start));
          vrank = -1;
        } else {
          MPIRAY_RETURN_IF_ERROR(Exchange(-1, nullptr, 0, LeadOf(me - 1), net_tmp_.data(), bytes, what, start));
          kernels::ReduceInto(op, dtype, buf, net_tmp_.data(), count);
          vrank = me / 2;
        }
      } else {
        vrank = me - rem;
      }
      if (vrank >= 0) {
        for (int mask = 1; mask < p; mask <<= 1) {
          int vpeer = vrank ^ mask;
          int peer = vpeer < rem ? vpeer * 2 + 1 : vpeer + rem;
          MPIRAY_RETURN_IF_ERROR(Exchange(LeadOf(peer), buf, bytes, LeadOf(peer), net_tmp_.data(), bytes, what, start));
          kernels::ReduceInto(op, dtype, buf, net_tmp_.data(), count);  // commutative: equal everywhere
        }
      }
      if (me < 2 * rem) {
        if (me % 2 == 0) {
          MPIRAY_RETURN_IF_ERROR(Exchange(-1, nullptr, 0, LeadOf(me + 1), buf, bytes, what, start));
        } else {
          MPIRAY_RETURN_IF_ERROR(Exchange(LeadOf(me - 1), buf, bytes, -1, nullptr, 0, what, start));
        }
      }
      return Status::OK();
    }
    // Ring: reduce-scatter, then all-gather; block b = elements [b*count/n, (b+1)*count/n).
    auto block = [&](int b, size_t* off, size_t* len) {
      b = (b % n + n) % n;
      size_t lo = count * static_cast<size_t>(b) / static_cast<size_t>(n);
      size_t hi = count * static_cast<size_t>(b + 1) / static_cast<size_t>(n);
      *off = lo * esz;
      *len = (hi - lo) * esz;
    };
    const int next = LeadOf(me + 1), prev = LeadOf(me - 1);
    size_t max_block = (count / static_cast<size_t>(n) + 1) * esz;
    net_tmp_.resize(max_block);
    const size_t piece = net_->piece() / esz * esz;
    for (int s = 0; s < n - 1; ++s) {
      size_t so, sl, ro, rl;
      block(me - s, &so, &sl);
      block(me - s - 1, &ro, &rl);
      // Reduce each piece as it arrives while the later ones are still on the wire.
      std::vector<NetLink::Op*> recvs, sends;
      MPIRAY_RETURN_IF_ERROR(net_->PostRecv(prev, Stream::kData, net_tmp_.data(), rl, &recvs));
      MPIRAY_RETURN_IF_ERROR(net_->PostSend(next, Stream::kData, buf + so, sl, &sends));
      for (size_t i = 0; i < recvs.size(); ++i) {
        std::vector<NetLink::Op*> one{recvs[i]};
        MPIRAY_RETURN_IF_ERROR(net_->Wait(one, what, start));
        size_t lo = i * piece, hi = std::min(rl, lo + piece);
        if (hi > lo) kernels::ReduceInto(op, dtype, buf + ro + lo, net_tmp_.data() + lo, (hi - lo) / esz);
      }
      MPIRAY_RETURN_IF_ERROR(net_->Wait(sends, what, start));
    }
    for (int s = 0; s < n - 1; ++s) {
      size_t so, sl, ro, rl;
      block(me + 1 - s, &so, &sl);
      block(me - s, &ro, &rl);
      MPIRAY_RETURN_IF_ERROR(Exchange(next, buf + so, sl, prev, buf + ro, rl, what, start));
    }
    return Status::OK();
  }

  Status NetReduce(const OpDesc& d, void* data, size_t count, DType dtype, ReduceOp op, int root_node) {
    auto start = Clock::now();
    MPIRAY_RETURN_IF_ERROR(NetCheck(d, start));
    const int n = N();
    const size_t bytes = count * kernels::DTypeSize(dtype);
    const int v = (my_node_ - root_node + n) % n;
    net_tmp_.resize(bytes);
    for (int mask = 1; mask < n; mask <<= 1) {
      if (v & mask) {
        return Exchange(LeadOf(v - mask + root_node), data, bytes, -1, nullptr, 0, "reduce", start);
      }
      if (v + mask < n) {
        MPIRAY_RETURN_IF_ERROR(Exchange(-1, nullptr, 0, LeadOf(v + mask + root_node), net_tmp_.data(), bytes, "reduce", start));
        kernels::ReduceInto(op, dtype, data, net_tmp_.data(), count);
      }
    }
    return Status::OK();
  }

  Status NetBroadcast(const OpDesc& d, void* data, size_t bytes, int root_node) {
    auto start = Clock::now();
    MPIRAY_RETURN_IF_ERROR(NetCheck(d, start));
    const int n = N();
    const int v = (my_node_ - root_node + n) % n;
    int mask = 1;
    while (mask < n) {
      if (v & mask) {
        MPIRAY_RETURN_IF_ERROR(Exchange(-1, nullptr, 0, LeadOf(v - mask + root_node), data, bytes, "broadcast", start));
        break;
      }
      mask <<= 1;
    }
    std::vector<NetLink::Op*> ops;
    for (mask >>= 1; mask > 0; mask >>= 1) {
      if (v + mask < n) MPIRAY_RETURN_IF_ERROR(net_->PostSend(LeadOf(v + mask + root_node), Stream::kData, data, bytes, &ops));
    }
    return net_->Wait(ops, "broadcast", start);
  }

  // Ring all-gather of whole nodes' blocks: at step s, node me passes node (me - s)'s blocks on.
  Status NetAllGather(const OpDesc& d, uint8_t* out, size_t bb) {
    auto start = Clock::now();
    MPIRAY_RETURN_IF_ERROR(NetCheck(d, start));
    const int n = N(), me = my_node_;
    const int next = LeadOf(me + 1), prev = LeadOf(me - 1);
    for (int s = 0; s < n - 1; ++s) {
      const auto& send_ranks = nodes_[static_cast<size_t>(((me - s) % n + n) % n)];
      const auto& recv_ranks = nodes_[static_cast<size_t>(((me - s - 1) % n + n) % n)];
      std::vector<NetLink::Op*> ops;
      for (int r : recv_ranks) {
        MPIRAY_RETURN_IF_ERROR(net_->PostRecv(prev, Stream::kData, out + static_cast<size_t>(r) * bb, bb, &ops));
      }
      for (int r : send_ranks) {
        MPIRAY_RETURN_IF_ERROR(net_->PostSend(next, Stream::kData, out + static_cast<size_t>(r) * bb, bb, &ops));
      }
      MPIRAY_RETURN_IF_ERROR(net_->Wait(ops, "allgather", start));
    }
    return Status::OK();
  }

  GroupOptions opts_;
  int rank_, world_;
  std::vector<MemberInfo> members_;
  std::vector<std::vector<int>> nodes_;
  std::vector<int> node_of_, local_of_;
  int my_node_ = 0, my_local_ = 0;
  std::unique_ptr<Health> health_;
  std::unique_ptr<ShmNode> shm_;
  std::unique_ptr<NetLink> net_;
  uint64_t shm_seq_ = 0, net_seq_ = 0;
  std::vector<uint8_t> scratch_, net_tmp_;
};

class UcxConnector final : public Connector {
 public:
  explicit UcxConnector(const GroupOptions& o) : opts_(o) {}
  ~UcxConnector() override {
    if (fd_ >= 0) close(fd_);
  }

  Result<std::string> LocalInfo() override {
    ProcessIdentity self = SelfIdentity();
    fd_ = CreateSegmentFd(opts_.name);
    if (fd_ < 0) {
      return Status(StatusCode::kIoError, "collective group '" + opts_.name +
                                              "': memfd_create failed: " + std::strerror(errno));
    }
    ShmConfig cfg = ShmConfigFromEnv();
    MemberInfo m;
    m.rank = opts_.rank;
    m.pid = self.pid;
    m.start_time = self.start_time;
    m.host = self.host;
    m.node = NodeKey(opts_, self.host);
    m.fd = fd_;
    m.chunk = cfg.chunk;
    m.slots = cfg.slots;
    m.small = cfg.small;
    return Pack(m);
  }

  Result<std::unique_ptr<Communicator>> Connect(const Roster& roster, const Exchange& exchange) override {
    std::vector<MemberInfo> members;
    for (size_t r = 0; r < roster.members.size(); ++r) {
      MPIRAY_ASSIGN_OR_RETURN(auto m, Unpack<MemberInfo>(roster.members[r], "member info"));
      if (m.rank != static_cast<int>(r)) {
        return Status(StatusCode::kInternal, "collective rendezvous: member " + std::to_string(r) +
                                                 " published rank " + std::to_string(m.rank));
      }
      members.push_back(std::move(m));
    }
    auto comm = std::make_unique<UcxCommunicator>(opts_, std::move(members));
    Status st = comm->Setup(exchange, fd_);
    // The leader's memfd stays reachable through its mapping; every descriptor can go now.
    close(fd_);
    fd_ = -1;
    if (!st.ok()) return st;
    return std::unique_ptr<Communicator>(std::move(comm));
  }

 private:
  GroupOptions opts_;
  int fd_ = -1;
};

}  // namespace

bool UcxAvailable(std::string* why) {
  (void)why;
  return true;
}

Result<std::unique_ptr<Connector>> MakeUcxConnector(const GroupOptions& options) {
  return std::unique_ptr<Connector>(std::make_unique<UcxConnector>(options));
}

}  // namespace mpiray::collective::detail
