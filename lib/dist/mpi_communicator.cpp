// MpiCommunicator's operations: argument checks, numbering, arrival notice,
// trace, then the MPI non-blocking call whose request the returned Work
// (mpi_group.h) polls.
#include "dist/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <functional>

#include "dist/mpi_group.h"
#include "dist/mpi_runtime.h"

namespace dtrain {

using detail::MpiGroup;
using detail::MpiWork;
using detail::OpInfo;
using detail::OpKind;

namespace {

MPI_Datatype mpi_type(const MpiGroup& g, OpKind kind, DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::bf16: return MPI_UINT16_T;  // reductions use the group's bf16 ops
    default:
      throw RuntimeError(fmt::format("{} on group '{}': {} tensors are not supported by the MPI "
                                     "communicator (fp32, fp64, bf16 and int32 are)",
                                     detail::op_kind_name(kind), g.name, dtype_name(t)));
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  throw InternalError("unknown ReduceOp");
}

MPI_Op reduce_op(const MpiGroup& g, ReduceOp op, DType t) {
  return t == DType::bf16 ? g.bf16_ops[static_cast<int>(op)] : mpi_op(op);
}

int mpi_count(const MpiGroup& g, OpKind kind, int64_t n) {
  if (n < 0 || n > INT_MAX)
    throw RuntimeError(fmt::format("{} on group '{}': {} elements exceed MPI's int count",
                                   detail::op_kind_name(kind), g.name, n));
  return static_cast<int>(n);
}

void check_tensor(const MpiGroup& g, OpKind kind, const Tensor& t, const char* role) {
  DTRAIN_CHECK(t.defined(), "{} on group '{}': the {} tensor is undefined",
               detail::op_kind_name(kind), g.name, role);
  if (!t.device().is_cpu())
    throw RuntimeError(fmt::format("{} on group '{}': the {} tensor is on {}; the MPI "
                                   "communicator carries CPU tensors only",
                                   detail::op_kind_name(kind), g.name, role, t.device().str()));
}

// Counts per member (equal parts of total when empty), checked.
std::vector<int> member_counts(const MpiGroup& g, OpKind kind, const std::vector<int64_t>& counts,
                               int64_t total) {
  const char* op = detail::op_kind_name(kind);
  std::vector<int> out(g.size);
  mpi_count(g, kind, total);  // offsets are ints too
  if (counts.empty()) {
    DTRAIN_CHECK(total % g.size == 0, "{} on group '{}': {} elements do not split into {} equal parts",
                 op, g.name, total, g.size);
    std::fill(out.begin(), out.end(), mpi_count(g, kind, total / g.size));
    return out;
  }
  DTRAIN_CHECK(static_cast<int>(counts.size()) == g.size,
               "{} on group '{}': {} counts for {} members", op, g.name, counts.size(), g.size);
  int64_t sum = 0;
  for (int m = 0; m < g.size; ++m) {
    DTRAIN_CHECK(counts[m] >= 0, "{} on group '{}': negative count", op, g.name);
    out[m] = mpi_count(g, kind, counts[m]);
    sum += counts[m];
  }
  DTRAIN_CHECK(sum == total, "{} on group '{}': counts sum to {}, the tensor has {} elements", op,
               g.name, sum, total);
  return out;
}

// Equal counts take MPI's equal-part call whether or not the caller spelt
// them out, so that members that differ only in that call the same collective.
bool is_uneven(const std::vector<int>& parts) {
  return std::adjacent_find(parts.begin(), parts.end(), std::not_equal_to<>()) != parts.end();
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, std::string name, MpiCommOptions options) {
  MPI_Comm comm;
  mpi_check(MPI_Comm_dup(parent, &comm), "MPI_Comm_dup");
  g_ = std::make_shared<MpiGroup>(comm, std::move(name), options);
}

MpiCommunicator::MpiCommunicator(std::shared_ptr<MpiGroup> group) : g_(std::move(group)) {}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(MPI_Comm parent, int color, int key,
                                                        std::string name, MpiCommOptions options) {
  MPI_Comm comm;
  mpi_check(MPI_Comm_split(parent, color, key, &comm), "MPI_Comm_split");
  if (comm == MPI_COMM_NULL) return nullptr;
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(std::make_shared<MpiGroup>(comm, std::move(name), options)));
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::adopt(MPI_Comm comm, std::string name,
                                                        MpiCommOptions options) {
  DTRAIN_CHECK(comm != MPI_COMM_NULL, "adopting MPI_COMM_NULL as group '{}'", name);
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(std::make_shared<MpiGroup>(comm, std::move(name), options)));
}

MpiCommunicator::~MpiCommunicator() = default;

int MpiCommunicator::rank() const { return g_->rank; }
int MpiCommunicator::size() const { return g_->size; }
const std::string& MpiCommunicator::name() const { return g_->name; }
int MpiCommunicator::world_rank(int r) const {
  DTRAIN_CHECK(r >= 0 && r < g_->size, "group '{}' has {} members, asked for member {}", g_->name,
               g_->size, r);
  return g_->world_ranks[r];
}
void MpiCommunicator::set_timeout(double seconds) {
  DTRAIN_CHECK(seconds > 0, "group '{}': timeout {} s", g_->name, seconds);
  g_->timeout = seconds;
}
double MpiCommunicator::timeout() const { return g_->timeout; }
const CommStats& MpiCommunicator::stats() const { return g_->stats; }
void MpiCommunicator::set_trace(CommTrace trace) { g_->trace = std::move(trace); }
int64_t MpiCommunicator::next_sequence() const { return g_->seq + 1; }
bool MpiCommunicator::failed() const { return !g_->failure.empty(); }
MPI_Comm MpiCommunicator::handle() const { return g_->comm; }

void MpiCommunicator::announce_device(OpInfo& op) {
  MpiGroup& g = *g_;
  g.check_usable();
  op.seq = ++g.seq;
  if (g.board) {
    g.board->announce(op.notice());
    g.check_mismatch();
  }
  if (g.trace) g.trace(g.trace_line(op));
}

std::string MpiCommunicator::explain_device(const OpInfo& op) { return g_->diagnose(op); }

std::string MpiCommunicator::describe(const OpInfo& op) const { return g_->what(op); }

namespace {

// Numbers, announces, traces and counts an operation; returns its Work for
// the caller to post the MPI call into.
std::unique_ptr<MpiWork> start(MpiGroup& g, const std::shared_ptr<MpiGroup>& gp, OpInfo& op,
                               size_t bytes, Tensor a, Tensor b = {}) {
  g.reap_orphans();
  if (op.collective()) {
    op.seq = ++g.seq;
    if (g.board) {
      g.board->announce(op.notice());
      g.check_mismatch();  // an earlier collective that completed despite disagreeing
    }
  }
  if (g.trace) g.trace(g.trace_line(op));
  ++g.stats.ops;
  g.stats.bytes += static_cast<double>(bytes);
  return std::make_unique<MpiWork>(gp, op, std::move(a), std::move(b));
}

WorkHandle posted(MpiGroup& g, const OpInfo& op, std::unique_ptr<MpiWork> w, int rc,
                  const char* call) {
  if (rc != MPI_SUCCESS) {
    try {
      mpi_check(rc, call);
    } catch (const RuntimeError& e) {
      g.fail(fmt::format("{} failed to start: {}", g.where(op), e.what()));
    }
  }
  return w;
}

}  // namespace

WorkHandle MpiCommunicator::all_reduce(Tensor t, ReduceOp rop) {
  MpiGroup& g = *g_;
  g.check_usable();
  if (staged("all_reduce", t)) return staged_all_reduce(std::move(t), rop);
  OpInfo op{.kind = OpKind::all_reduce, .reduce = rop};
  check_tensor(g, op.kind, t, "reduced");
  op.dtype = t.dtype();
  op.count = t.numel();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  int n = mpi_count(g, op.kind, op.count);
  void* p = t.raw();
  auto w = start(g, g_, op, t.bytes(), t);
  int rc = MPI_Iallreduce(MPI_IN_PLACE, p, n, type, reduce_op(g, rop, op.dtype), g.comm, w->request());
  return posted(g, op, std::move(w), rc, "MPI_Iallreduce");
}

WorkHandle MpiCommunicator::reduce_scatter(Tensor in, Tensor out, ReduceOp rop,
                                           std::vector<int64_t> counts) {
  MpiGroup& g = *g_;
  g.check_usable();
  if (staged("reduce_scatter", in, out))
    return staged_reduce_scatter(std::move(in), std::move(out), rop, std::move(counts));
  OpInfo op{.kind = OpKind::reduce_scatter, .reduce = rop};
  check_tensor(g, op.kind, in, "input");
  check_tensor(g, op.kind, out, "output");
  DTRAIN_CHECK(in.dtype() == out.dtype(), "reduce_scatter on group '{}': {} input, {} output",
               g.name, dtype_name(in.dtype()), dtype_name(out.dtype()));
  op.dtype = in.dtype();
  op.count = in.numel();
  const MPI_Datatype type = mpi_type(g, op.kind, op.dtype);  // refuses the rest, before numbering
  std::vector<int> parts = member_counts(g, op.kind, counts, in.numel());
  op.uneven = is_uneven(parts);
  DTRAIN_CHECK(out.numel() == parts[g.rank],
               "reduce_scatter on group '{}': member {} gets {} elements, the output has {}",
               g.name, g.rank, parts[g.rank], out.numel());
  // Large ones: the ring (mpi_ring.h) on the group's own communicator, its
  // messages tagged with this collective's number so that reduce-scatters in
  // flight together never take each other's. The output may be the start of
  // the input (MPI_IN_PLACE's layout).
  auto w = start(g, g_, op, in.bytes(), in, out);  // numbers the operation
  if (in.bytes() < g.ring_bytes) {
    const bool in_place = in.raw() == out.raw();
    const void* send = in_place ? MPI_IN_PLACE : in.raw();
    int rc;
    if (!op.uneven) {
      rc = MPI_Ireduce_scatter_block(send, out.raw(), parts[0], type, reduce_op(g, rop, op.dtype), g.comm,
                                     w->request());
    } else {
      w->counts() = std::move(parts);
      rc = MPI_Ireduce_scatter(send, out.raw(), w->counts().data(), type, reduce_op(g, rop, op.dtype), g.comm,
                               w->request());
    }
    return posted(g, op, std::move(w), rc, "MPI_Ireduce_scatter");
  }
  const int tag = static_cast<int>(op.seq % (static_cast<int64_t>(g.tag_ub) + 1));
  Tensor scratch = g.ring_buffer(detail::RingReduceScatter::scratch_bytes(parts, op.dtype));
  const int rc = w->run(std::make_unique<detail::RingReduceScatter>(g.ring, g.rank, g.size, tag, op.dtype, type, rop,
                                                                    in.raw(), out.raw(), std::move(parts),
                                                                    std::move(scratch)));
  return posted(g, op, std::move(w), rc, "the reduce-scatter ring's MPI_Isend/MPI_Irecv");
}

WorkHandle MpiCommunicator::all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) {
  MpiGroup& g = *g_;
  g.check_usable();
  if (staged("all_gather", in, out)) return staged_all_gather(std::move(in), std::move(out), std::move(counts));
  OpInfo op{.kind = OpKind::all_gather};
  check_tensor(g, op.kind, in, "input");
  check_tensor(g, op.kind, out, "output");
  DTRAIN_CHECK(in.dtype() == out.dtype(), "all_gather on group '{}': {} input, {} output", g.name,
               dtype_name(in.dtype()), dtype_name(out.dtype()));
  op.dtype = out.dtype();
  op.count = out.numel();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  std::vector<int> parts = member_counts(g, op.kind, counts, out.numel());
  op.uneven = is_uneven(parts);
  DTRAIN_CHECK(in.numel() == parts[g.rank],
               "all_gather on group '{}': member {} gives {} elements, the input has {}", g.name,
               g.rank, parts[g.rank], in.numel());
  std::vector<int> displs(g.size, 0);
  for (int m = 1; m < g.size; ++m) displs[m] = displs[m - 1] + parts[m - 1];
  char* own = static_cast<char*>(out.raw()) + static_cast<size_t>(displs[g.rank]) * dtype_size(op.dtype);
  // In place when the input already sits at this member's place in the output.
  bool in_place = in.raw() == own;
  DTRAIN_CHECK(in_place || in.raw() != out.raw() || in.numel() == 0,
               "all_gather on group '{}': the input overlaps the output at the wrong place",
               g.name);
  const void* send = in_place ? MPI_IN_PLACE : in.raw();
  void* recv = out.raw();
  auto w = start(g, g_, op, in.bytes(), in, out);
  int rc;
  if (!op.uneven) {
    rc = MPI_Iallgather(send, parts[0], type, recv, parts[0], type, g.comm, w->request());
  } else {
    w->counts() = std::move(parts);
    w->displs() = std::move(displs);
    rc = MPI_Iallgatherv(send, w->counts()[g.rank], type, recv, w->counts().data(),
                         w->displs().data(), type, g.comm, w->request());
  }
  return posted(g, op, std::move(w), rc, "MPI_Iallgather");
}

WorkHandle MpiCommunicator::broadcast(Tensor t, int root) {
  MpiGroup& g = *g_;
  g.check_usable();
  if (staged("broadcast", t)) return staged_broadcast(std::move(t), root);
  OpInfo op{.kind = OpKind::broadcast, .member = root};
  check_tensor(g, op.kind, t, "broadcast");
  DTRAIN_CHECK(root >= 0 && root < g.size, "broadcast on group '{}' of {} members from member {}",
               g.name, g.size, root);
  op.dtype = t.dtype();
  op.count = t.numel();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  int n = mpi_count(g, op.kind, op.count);
  void* p = t.raw();
  auto w = start(g, g_, op, t.bytes(), t);
  int rc = MPI_Ibcast(p, n, type, root, g.comm, w->request());
  return posted(g, op, std::move(w), rc, "MPI_Ibcast");
}

namespace {

// send and recv differ only in the MPI call and the words of their messages.
WorkHandle point_to_point(const std::shared_ptr<MpiGroup>& gp, Tensor t, int peer, int tag, bool sending) {
  MpiGroup& g = *gp;
  g.check_usable();
  const char* verb = sending ? "send" : "recv";
  OpInfo op{.kind = sending ? OpKind::send : OpKind::recv, .member = peer, .tag = tag};
  check_tensor(g, op.kind, t, sending ? "sent" : "received");
  DTRAIN_CHECK(peer >= 0 && peer < g.size, "{} on group '{}' of {} members {} member {}", verb, g.name,
               g.size, sending ? "to" : "from", peer);
  DTRAIN_CHECK(tag >= 0 && tag <= g.tag_ub, "{} on group '{}': tag {} outside 0..{}", verb, g.name,
               tag, g.tag_ub);
  op.dtype = t.dtype();
  op.count = t.numel();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  int n = mpi_count(g, op.kind, op.count);
  void* p = t.raw();
  auto w = start(g, gp, op, t.bytes(), t);
  int rc = sending ? MPI_Isend(p, n, type, peer, tag, g.comm, w->request())
                   : MPI_Irecv(p, n, type, peer, tag, g.comm, w->request());
  return posted(g, op, std::move(w), rc, sending ? "MPI_Isend" : "MPI_Irecv");
}

}  // namespace

WorkHandle MpiCommunicator::send(Tensor t, int peer, int tag) {
  if (staged("send", t)) return staged_p2p(std::move(t), peer, tag, true);
  return point_to_point(g_, std::move(t), peer, tag, true);
}

WorkHandle MpiCommunicator::recv(Tensor t, int peer, int tag) {
  if (staged("recv", t)) return staged_p2p(std::move(t), peer, tag, false);
  return point_to_point(g_, std::move(t), peer, tag, false);
}

WorkHandle MpiCommunicator::barrier() {
  MpiGroup& g = *g_;
  g.check_usable();
  OpInfo op{.kind = OpKind::barrier};
  auto w = start(g, g_, op, 0, Tensor());
  int rc = MPI_Ibarrier(g.comm, w->request());
  return posted(g, op, std::move(w), rc, "MPI_Ibarrier");
}

CommTrace trace_to_stderr() {
  // C stdio, which does not throw: a trace line that cannot be written is lost, not the run.
  return [](const std::string& line) {
    std::fputs((line + "\n").c_str(), stderr);
    std::clearerr(stderr);
  };
}

}  // namespace dtrain
