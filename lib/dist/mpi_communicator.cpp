// MpiCommunicator's operations: argument checks, the MPI non-blocking call,
// and the Work whose wait() polls MPI_Test against the group's timeout and
// turns a hang into a RuntimeError naming who did not arrive.
#include "dist/mpi_communicator.h"

#include <chrono>
#include <climits>
#include <numeric>
#include <thread>

#include "dist/arrival_board.h"
#include "dist/mpi_runtime.h"

namespace dtrain {

namespace detail {

using Clock = std::chrono::steady_clock;

enum class OpKind : int64_t { all_reduce = 1, reduce_scatter, all_gather, broadcast, barrier, send, recv };

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::all_reduce: return "all_reduce";
    case OpKind::reduce_scatter: return "reduce_scatter";
    case OpKind::all_gather: return "all_gather";
    case OpKind::broadcast: return "broadcast";
    case OpKind::barrier: return "barrier";
    case OpKind::send: return "send";
    case OpKind::recv: return "recv";
  }
  return "?";
}

// One operation, as messages and notices describe it.
struct OpInfo {
  OpKind kind = OpKind::barrier;
  DType dtype = DType::f32;
  int64_t count = 0;         // elements; for collectives the same on every member
  ReduceOp reduce = ReduceOp::sum;
  int member = -1;           // broadcast root, send/recv peer
  int tag = 0;
  int64_t seq = 0;           // collectives: the group's number for it, from 1
  bool uneven = false;

  bool collective() const { return kind != OpKind::send && kind != OpKind::recv; }
  bool reduces() const { return kind == OpKind::all_reduce || kind == OpKind::reduce_scatter; }
  Notice notice() const {
    int64_t low = reduces() ? static_cast<int64_t>(reduce) : member;
    return {seq, static_cast<int64_t>(kind), count,
            (static_cast<int64_t>(dtype) << 32) | (low & 0xffffffff)};
  }
  static OpInfo from(const Notice& n) {
    OpInfo o;
    o.kind = static_cast<OpKind>(n.kind);
    o.count = n.count;
    o.dtype = static_cast<DType>(n.detail >> 32);
    int low = static_cast<int>(n.detail & 0xffffffff);
    if (o.reduces()) o.reduce = static_cast<ReduceOp>(low);
    else o.member = low;
    o.seq = n.seq;
    return o;
  }
};

// An operation whose Work was dropped before it completed: MPI still owns its
// request and buffers, so the group keeps them until MPI is done with them.
struct Orphan {
  MPI_Request request;
  Tensor a, b;
  std::vector<int> counts, displs;
};

struct MpiGroup {
  MPI_Comm comm = MPI_COMM_NULL;
  std::string name;
  int rank = 0;
  int size = 1;
  int tag_ub = 32767;
  std::vector<int> world_ranks;
  double timeout = 300;
  CommTrace trace;
  CommStats stats;
  int64_t seq = 0;  // collectives issued
  std::unique_ptr<ArrivalBoard> board;
  std::string failure;  // the first failure; non-empty = unusable
  std::vector<Orphan> orphans;

  ~MpiGroup() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (finalised) return;
    reap_orphans();
    // Collectives that never completed (a failed job): MPI may still write
    // into their buffers, so they stay allocated.
    if (!orphans.empty()) new std::vector<Orphan>(std::move(orphans));
    board.reset();
    MPI_Comm_free(&comm);
  }

  void reap_orphans() {
    std::erase_if(orphans, [](Orphan& o) {
      int done = 0;
      return MPI_Test(&o.request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done;
    });
  }

  std::string member_name(int m) const {
    return fmt::format("member {} (world rank {})", m, world_ranks[m]);
  }

  // "all_reduce of 1024 fp32 (sum)"
  std::string what(const OpInfo& op) const {
    std::string s = op_kind_name(op.kind);
    if (op.kind != OpKind::barrier) s += fmt::format(" of {} {}", op.count, dtype_name(op.dtype));
    if (op.reduces()) s += fmt::format(" ({})", reduce_op_name(op.reduce));
    if (op.uneven) s += " in uneven parts";
    if (op.kind == OpKind::broadcast) s += " from " + member_name(op.member);
    if (op.kind == OpKind::send) s += " to " + member_name(op.member);
    if (op.kind == OpKind::recv) s += " from " + member_name(op.member);
    if (!op.collective()) s += fmt::format(", tag {},", op.tag);
    return s;
  }

  // "all_reduce of 1024 fp32 (sum) on group 'dp' (collective #17; world ranks 0, 2)"
  std::string where(const OpInfo& op) const {
    std::string s = fmt::format("{} on group '{}' (", what(op), name);
    if (op.collective()) s += fmt::format("collective #{}; ", op.seq);
    return s + fmt::format("world ranks {})", fmt::join(world_ranks, ", "));
  }

  // Records the first failure; later operations refuse to start.
  [[noreturn]] void fail(const std::string& message) {
    if (failure.empty()) failure = message;
    throw RuntimeError(message);
  }

  void check_usable() const {
    if (!failure.empty())
      throw RuntimeError(fmt::format(
          "group '{}' cannot be used after an earlier failure: {}", name, failure));
  }

  // The timeout's explanation: who did not arrive, or who called something else.
  std::string diagnose(const OpInfo& op) {
    if (!op.collective())
      return fmt::format("world rank {} did not {}", world_ranks[op.member],
                         op.kind == OpKind::send ? "post the matching recv" : "send");
    if (!board) return "arrival notices are off, so which ranks did not arrive is unknown";
    board->drain();
    std::vector<std::string> missing, other;
    for (int m = 0; m < size; ++m) {
      if (m == rank) continue;
      const Notice& n = board->latest(m);
      if (n.seq < op.seq)
        missing.push_back(n.seq == 0 ? fmt::format("{} (no collective here yet)", world_ranks[m])
                                     : fmt::format("{} (last here at #{})", world_ranks[m], n.seq));
      else if (n.seq == op.seq && !n.same_call(op.notice()))
        other.push_back(fmt::format("world rank {} called {} as #{}", world_ranks[m],
                                    what(OpInfo::from(n)), n.seq));
    }
    std::string s;
    if (!missing.empty())
      s = fmt::format("world rank{} {} did not arrive", missing.size() > 1 ? "s" : "",
                      fmt::join(missing, ", "));
    if (!other.empty()) s += fmt::format("{}{}", s.empty() ? "" : "; ", fmt::join(other, "; "));
    return s.empty() ? "every member arrived, yet the transfer did not finish (a dead or stuck rank?)"
                     : s;
  }

  // A member that called a different collective under this number.
  void check_mismatch(const OpInfo& op) {
    for (int m = 0; m < size; ++m) {
      const Notice& n = board->latest(m);
      if (m != rank && n.seq == op.seq && !n.same_call(op.notice()))
        fail(fmt::format("{}: world rank {} called {} as #{}: the ranks disagree on the order of "
                         "collectives",
                         where(op), world_ranks[m], what(OpInfo::from(n)), n.seq));
    }
  }
};

class MpiWork : public Work {
 public:
  MpiWork(std::shared_ptr<MpiGroup> g, OpInfo op, Tensor a, Tensor b)
      : g_(std::move(g)), op_(op), a_(std::move(a)), b_(std::move(b)) {}

  ~MpiWork() override {
    if (done_ || request_ == MPI_REQUEST_NULL) return;
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (finalised) return;
    int flag = 0;
    if (MPI_Test(&request_, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) return;
    g_->orphans.push_back({request_, std::move(a_), std::move(b_), std::move(counts_),
                           std::move(displs_)});
  }

  bool test() override {
    if (!done_) poll();
    return done_;
  }

  void wait() override {
    if (done_) return;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(g_->timeout));
    auto next_drain = start + std::chrono::milliseconds(20);
    while (!poll()) {
      auto now = Clock::now();
      if (now >= deadline) {
        g_->stats.wait_seconds += std::chrono::duration<double>(now - start).count();
        g_->fail(fmt::format("{} did not complete within {} s: {}", g_->where(op_), g_->timeout,
                             g_->diagnose(op_)));
      }
      if (g_->board && op_.collective() && now >= next_drain) {
        g_->board->drain();
        g_->check_mismatch(op_);
        next_drain = now + std::chrono::milliseconds(20);
      }
      // Spin first (latency), then yield to ranks sharing the core. Never
      // sleep: MPI advances a non-blocking collective only inside MPI calls,
      // and a 50 us nap per poll made a 64 MiB all-reduce 40% slower.
      if (now - start > std::chrono::microseconds(200)) std::this_thread::yield();
    }
    g_->stats.wait_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  }

  MPI_Request* request() { return &request_; }
  std::vector<int>& counts() { return counts_; }
  std::vector<int>& displs() { return displs_; }

 private:
  bool poll() {
    MPI_Status status;
    int flag = 0;
    int rc = MPI_Test(&request_, &flag, &status);
    if (rc != MPI_SUCCESS) {
      request_ = MPI_REQUEST_NULL;  // MPI has released it with the error
      done_ = true;
      try {
        mpi_check(rc, "MPI_Test");
      } catch (const RuntimeError& e) {
        g_->fail(fmt::format("{} failed: {}", g_->where(op_), e.what()));
      }
    }
    if (!flag) return false;
    done_ = true;
    if (op_.kind == OpKind::recv) {
      int got = 0;
      MPI_Get_count(&status, MPI_BYTE, &got);
      if (static_cast<size_t>(got) != a_.bytes())
        g_->fail(fmt::format("{}: the message had {} bytes, not {}: the sender sent something else",
                             g_->where(op_), got, a_.bytes()));
    }
    a_ = Tensor();
    b_ = Tensor();
    return true;
  }

  std::shared_ptr<MpiGroup> g_;
  OpInfo op_;
  Tensor a_, b_;  // kept alive until MPI is done with them
  std::vector<int> counts_, displs_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool done_ = false;
};

}  // namespace detail

using detail::MpiGroup;
using detail::MpiWork;
using detail::OpInfo;
using detail::OpKind;

namespace {

std::shared_ptr<MpiGroup> make_group(MPI_Comm comm, std::string name, const MpiCommOptions& o) {
  auto g = std::make_shared<MpiGroup>();
  g->comm = comm;
  g->name = std::move(name);
  g->timeout = o.timeout_seconds;
  g->trace = o.trace;
  mpi_check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  mpi_check(MPI_Comm_rank(comm, &g->rank), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(comm, &g->size), "MPI_Comm_size");
  void* ub = nullptr;
  int flag = 0;
  if (MPI_Comm_get_attr(comm, MPI_TAG_UB, &ub, &flag) == MPI_SUCCESS && flag)
    g->tag_ub = *static_cast<int*>(ub);
  MPI_Group mine, world;
  mpi_check(MPI_Comm_group(comm, &mine), "MPI_Comm_group");
  mpi_check(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group");
  std::vector<int> members(g->size);
  std::iota(members.begin(), members.end(), 0);
  g->world_ranks.resize(g->size);
  int rc = MPI_Group_translate_ranks(mine, g->size, members.data(), world, g->world_ranks.data());
  MPI_Group_free(&mine);
  MPI_Group_free(&world);
  mpi_check(rc, "MPI_Group_translate_ranks");
  if (o.arrival_notices && g->size > 1) {
    MPI_Comm notices;
    mpi_check(MPI_Comm_dup(comm, &notices), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(notices, MPI_ERRORS_RETURN);
    g->board = std::make_unique<detail::ArrivalBoard>(notices, g->rank, g->size);
  }
  return g;
}

MPI_Datatype mpi_type(const MpiGroup& g, OpKind kind, DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    default:
      throw RuntimeError(fmt::format("{} on group '{}': {} tensors are not supported by the MPI "
                                     "communicator (fp32, fp64 and int32 are)",
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

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, std::string name, MpiCommOptions options) {
  MPI_Comm comm;
  mpi_check(MPI_Comm_dup(parent, &comm), "MPI_Comm_dup");
  g_ = make_group(comm, std::move(name), options);
}

MpiCommunicator::MpiCommunicator(std::shared_ptr<MpiGroup> group) : g_(std::move(group)) {}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(MPI_Comm parent, int color, int key,
                                                        std::string name, MpiCommOptions options) {
  MPI_Comm comm;
  mpi_check(MPI_Comm_split(parent, color, key, &comm), "MPI_Comm_split");
  if (comm == MPI_COMM_NULL) return nullptr;
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(make_group(comm, std::move(name), options)));
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::adopt(MPI_Comm comm, std::string name,
                                                        MpiCommOptions options) {
  DTRAIN_CHECK(comm != MPI_COMM_NULL, "adopting MPI_COMM_NULL as group '{}'", name);
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(make_group(comm, std::move(name), options)));
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

namespace {

// Numbers, announces, traces and counts an operation; returns its Work for
// the caller to post the MPI call into.
std::unique_ptr<MpiWork> start(MpiGroup& g, const std::shared_ptr<MpiGroup>& gp, OpInfo& op,
                               size_t bytes, Tensor a, Tensor b = {}) {
  g.reap_orphans();
  if (op.collective()) {
    op.seq = ++g.seq;
    if (g.board) g.board->announce(op.notice());
  }
  if (g.trace) {
    std::string line = fmt::format("rank {} {}", g.world_ranks[g.rank], g.name);
    if (op.collective()) line += fmt::format("#{}", op.seq);
    line += fmt::format(" {}", detail::op_kind_name(op.kind));
    if (op.kind != OpKind::barrier) line += fmt::format(" {} {}", op.count, dtype_name(op.dtype));
    if (op.reduces()) line += fmt::format(" {}", reduce_op_name(op.reduce));
    if (op.uneven) line += " uneven";
    if (op.kind == OpKind::broadcast) line += fmt::format(" root {}", op.member);
    if (op.kind == OpKind::send) line += fmt::format(" to {} tag {}", op.member, op.tag);
    if (op.kind == OpKind::recv) line += fmt::format(" from {} tag {}", op.member, op.tag);
    g.trace(line);
  }
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
  OpInfo op{.kind = OpKind::all_reduce, .reduce = rop};
  check_tensor(g, op.kind, t, "reduced");
  op.dtype = t.dtype();
  op.count = t.numel();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  int n = mpi_count(g, op.kind, op.count);
  void* p = t.raw();
  auto w = start(g, g_, op, t.bytes(), t);
  int rc = MPI_Iallreduce(MPI_IN_PLACE, p, n, type, mpi_op(rop), g.comm, w->request());
  return posted(g, op, std::move(w), rc, "MPI_Iallreduce");
}

WorkHandle MpiCommunicator::reduce_scatter(Tensor in, Tensor out, ReduceOp rop,
                                           std::vector<int64_t> counts) {
  MpiGroup& g = *g_;
  g.check_usable();
  OpInfo op{.kind = OpKind::reduce_scatter, .reduce = rop};
  check_tensor(g, op.kind, in, "input");
  check_tensor(g, op.kind, out, "output");
  DTRAIN_CHECK(in.dtype() == out.dtype(), "reduce_scatter on group '{}': {} input, {} output",
               g.name, dtype_name(in.dtype()), dtype_name(out.dtype()));
  op.dtype = in.dtype();
  op.count = in.numel();
  op.uneven = !counts.empty();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  std::vector<int> parts = member_counts(g, op.kind, counts, in.numel());
  DTRAIN_CHECK(out.numel() == parts[g.rank],
               "reduce_scatter on group '{}': member {} gets {} elements, the output has {}",
               g.name, g.rank, parts[g.rank], out.numel());
  // In place when the output is the start of the input (MPI_IN_PLACE's layout).
  bool in_place = in.raw() == out.raw();
  const void* send = in_place ? MPI_IN_PLACE : in.raw();
  void* recv = out.raw();
  auto w = start(g, g_, op, in.bytes(), in, out);
  int rc;
  if (!op.uneven) {
    rc = MPI_Ireduce_scatter_block(send, recv, parts[0], type, mpi_op(rop), g.comm, w->request());
  } else {
    w->counts() = std::move(parts);
    rc = MPI_Ireduce_scatter(send, recv, w->counts().data(), type, mpi_op(rop), g.comm,
                             w->request());
  }
  return posted(g, op, std::move(w), rc, "MPI_Ireduce_scatter");
}

WorkHandle MpiCommunicator::all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) {
  MpiGroup& g = *g_;
  g.check_usable();
  OpInfo op{.kind = OpKind::all_gather};
  check_tensor(g, op.kind, in, "input");
  check_tensor(g, op.kind, out, "output");
  DTRAIN_CHECK(in.dtype() == out.dtype(), "all_gather on group '{}': {} input, {} output", g.name,
               dtype_name(in.dtype()), dtype_name(out.dtype()));
  op.dtype = out.dtype();
  op.count = out.numel();
  op.uneven = !counts.empty();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  std::vector<int> parts = member_counts(g, op.kind, counts, out.numel());
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

WorkHandle MpiCommunicator::send(Tensor t, int peer, int tag) {
  MpiGroup& g = *g_;
  g.check_usable();
  OpInfo op{.kind = OpKind::send, .member = peer, .tag = tag};
  check_tensor(g, op.kind, t, "sent");
  DTRAIN_CHECK(peer >= 0 && peer < g.size, "send on group '{}' of {} members to member {}", g.name,
               g.size, peer);
  DTRAIN_CHECK(tag >= 0 && tag <= g.tag_ub, "send on group '{}': tag {} outside 0..{}", g.name,
               tag, g.tag_ub);
  op.dtype = t.dtype();
  op.count = t.numel();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  int n = mpi_count(g, op.kind, op.count);
  void* p = t.raw();
  auto w = start(g, g_, op, t.bytes(), t);
  int rc = MPI_Isend(p, n, type, peer, tag, g.comm, w->request());
  return posted(g, op, std::move(w), rc, "MPI_Isend");
}

WorkHandle MpiCommunicator::recv(Tensor t, int peer, int tag) {
  MpiGroup& g = *g_;
  g.check_usable();
  OpInfo op{.kind = OpKind::recv, .member = peer, .tag = tag};
  check_tensor(g, op.kind, t, "received");
  DTRAIN_CHECK(peer >= 0 && peer < g.size, "recv on group '{}' of {} members from member {}",
               g.name, g.size, peer);
  DTRAIN_CHECK(tag >= 0 && tag <= g.tag_ub, "recv on group '{}': tag {} outside 0..{}", g.name,
               tag, g.tag_ub);
  op.dtype = t.dtype();
  op.count = t.numel();
  MPI_Datatype type = mpi_type(g, op.kind, op.dtype);
  int n = mpi_count(g, op.kind, op.count);
  void* p = t.raw();
  auto w = start(g, g_, op, t.bytes(), t);
  int rc = MPI_Irecv(p, n, type, peer, tag, g.comm, w->request());
  return posted(g, op, std::move(w), rc, "MPI_Irecv");
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
  return [](const std::string& line) { fmt::print(stderr, "{}\n", line); };
}

}  // namespace dtrain
