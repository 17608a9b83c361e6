// MpiGroup and MpiWork (mpi_group.h): how operations are described, how a
// Work waits (polling MPI_Test against the timeout) and how a timeout is
// explained from the arrival notices.
#include "dist/mpi_group.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <span>
#include <thread>

#include "dist/mpi_runtime.h"

namespace dtrain::detail {

using Clock = std::chrono::steady_clock;

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

Notice OpInfo::notice() const {
  int64_t low = reduces() ? static_cast<int64_t>(reduce) : member;
  return {seq, static_cast<int64_t>(kind), count,
          (static_cast<int64_t>(dtype) << 32) | (low & 0xffffffff)};
}

OpInfo OpInfo::from(const Notice& n) {
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

// ---- MpiGroup ----

namespace {

// MPI's user-op signature over reduce_into (mpi_ring.h), which the ring uses too.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_into(DType::bf16, ReduceOp::sum, in, inout, *len);
}
void bf16_max(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_into(DType::bf16, ReduceOp::max, in, inout, *len);
}
void bf16_min(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_into(DType::bf16, ReduceOp::min, in, inout, *len);
}

}  // namespace

MpiGroup::MpiGroup(MPI_Comm c, std::string n, const MpiCommOptions& o)
    : comm(c), name(std::move(n)), timeout(o.timeout_seconds),
      trace(o.trace),
      on_blocked(o.on_blocked),
      blocked_after_s(o.blocked_after_s),
      ring_bytes(o.ring_reduce_scatter_bytes) {
  mpi_check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  mpi_check(MPI_Op_create(&bf16_sum, 1, &bf16_ops[static_cast<int>(ReduceOp::sum)]), "MPI_Op_create");
  mpi_check(MPI_Op_create(&bf16_max, 1, &bf16_ops[static_cast<int>(ReduceOp::max)]), "MPI_Op_create");
  mpi_check(MPI_Op_create(&bf16_min, 1, &bf16_ops[static_cast<int>(ReduceOp::min)]), "MPI_Op_create");
  mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  void* ub = nullptr;
  int flag = 0;
  if (MPI_Comm_get_attr(comm, MPI_TAG_UB, &ub, &flag) == MPI_SUCCESS && flag)
    tag_ub = *static_cast<int*>(ub);
  MPI_Group mine, world;
  mpi_check(MPI_Comm_group(comm, &mine), "MPI_Comm_group");
  mpi_check(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group");
  std::vector<int> members(size);
  std::iota(members.begin(), members.end(), 0);
  world_ranks.resize(size);
  int rc = MPI_Group_translate_ranks(mine, size, members.data(), world, world_ranks.data());
  MPI_Group_free(&mine);
  MPI_Group_free(&world);
  mpi_check(rc, "MPI_Group_translate_ranks");
  if (size > 1) {
    mpi_check(MPI_Comm_dup(comm, &ring), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(ring, MPI_ERRORS_RETURN);
  }
  if (o.arrival_notices && size > 1) {
    MPI_Comm notices;
    mpi_check(MPI_Comm_dup(comm, &notices), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(notices, MPI_ERRORS_RETURN);
    board = std::make_unique<ArrivalBoard>(notices, rank, size);
  }
}

MpiGroup::~MpiGroup() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  // Receives nobody can wait for any more are cancelled; collectives (and
  // sends) cannot be, and MPI may still touch their buffers: in a failed job
  // those stay allocated.
  for (Orphan& o : orphans)
    if (o.receive) MPI_Cancel(&o.request);
  reap_orphans();
  if (!orphans.empty()) new std::vector<Orphan>(std::move(orphans));
  board.reset();
  for (MPI_Op& op : bf16_ops)
    if (op != MPI_OP_NULL) MPI_Op_free(&op);
  if (ring != MPI_COMM_NULL) MPI_Comm_free(&ring);
  MPI_Comm_free(&comm);
}

Tensor MpiGroup::ring_buffer(size_t bytes) {
  if (bytes == 0) return {};
  // The smallest kept buffer that is large enough.
  auto best = ring_buffers.end();
  for (auto it = ring_buffers.begin(); it != ring_buffers.end(); ++it)
    if (it->bytes() >= bytes && (best == ring_buffers.end() || it->bytes() < best->bytes())) best = it;
  if (best == ring_buffers.end()) return Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8);
  Tensor t = std::move(*best);
  ring_buffers.erase(best);
  return t;
}

void MpiGroup::keep_ring_buffer(Tensor buffer) {
  if (!buffer.defined()) return;
  ring_buffers.push_back(std::move(buffer));
  if (ring_buffers.size() > kRingBuffers) {  // drop the smallest
    auto smallest = std::min_element(ring_buffers.begin(), ring_buffers.end(),
                                     [](const Tensor& a, const Tensor& b) { return a.bytes() < b.bytes(); });
    ring_buffers.erase(smallest);
  }
}

void MpiGroup::reap_orphans() {
  std::erase_if(orphans, [](Orphan& o) {
    int done = 0;
    return MPI_Test(&o.request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done;
  });
}

std::string MpiGroup::member_name(int m) const {
  return fmt::format("member {} (world rank {})", m, world_ranks[m]);
}

std::string MpiGroup::what(const OpInfo& op) const {
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

std::string MpiGroup::where(const OpInfo& op) const {
  std::string s = fmt::format("{} on group '{}' (", what(op), name);
  if (op.collective()) s += fmt::format("collective #{}; ", op.seq);
  return s + fmt::format("world ranks {})", fmt::join(world_ranks, ", "));
}

std::string MpiGroup::trace_line(const OpInfo& op) const {
  std::string line = fmt::format("rank {} {}", world_ranks[rank], name);
  if (op.collective()) line += fmt::format("#{}", op.seq);
  line += fmt::format(" {}", op_kind_name(op.kind));
  if (op.kind != OpKind::barrier) line += fmt::format(" {} {}", op.count, dtype_name(op.dtype));
  if (op.reduces()) line += fmt::format(" {}", reduce_op_name(op.reduce));
  if (op.uneven) line += " uneven";
  if (op.kind == OpKind::broadcast) line += fmt::format(" root {}", op.member);
  if (op.kind == OpKind::send) line += fmt::format(" to {} tag {}", op.member, op.tag);
  if (op.kind == OpKind::recv) line += fmt::format(" from {} tag {}", op.member, op.tag);
  return line;
}

void MpiGroup::fail(const std::string& message) {
  if (failure.empty()) failure = message;
  throw RuntimeError(message);
}

void MpiGroup::check_usable() const {
  if (!failure.empty())
    throw RuntimeError(
        fmt::format("group '{}' cannot be used after an earlier failure: {}", name, failure));
}

std::string MpiGroup::diagnose(const OpInfo& op, double waited_s) {
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
    else if (const Notice* at = board->received(m, op.seq); at && !at->same_call(op.notice()))
      other.push_back(fmt::format("world rank {} called {} as #{}", world_ranks[m],
                                  what(OpInfo::from(*at)), at->seq));
  }
  std::string s;
  if (!missing.empty())
    s = fmt::format("world rank{} {} did not arrive", missing.size() > 1 ? "s" : "",
                    fmt::join(missing, ", "));
  if (!other.empty()) s += fmt::format("{}{}", s.empty() ? "" : "; ", fmt::join(other, "; "));
  if (!s.empty()) return s;
  // Every member arrived. Those still waiting send a heartbeat each second;
  // one silent for longer stopped, died or is blocked elsewhere mid-transfer.
  std::vector<std::string> silent;
  if (waited_s >= kSilentSeconds)
    for (int m = 0; m < size; ++m)
      if (m != rank && board->silent_seconds(m) >= kSilentSeconds)
        silent.push_back(fmt::format("{} (silent {:.0f} s)", world_ranks[m], board->silent_seconds(m)));
  if (!silent.empty())
    return fmt::format("every member arrived, but world rank{} {} did not wait for it since (stopped, "
                       "dead, or blocked elsewhere)",
                       silent.size() > 1 ? "s" : "", fmt::join(silent, ", "));
  return "every member arrived, yet the transfer did not finish (a dead or stuck rank?)";
}

void MpiGroup::check_mismatch() {
  const ArrivalBoard::Mismatch* x = board ? board->mismatch() : nullptr;
  if (!x) return;
  OpInfo mine = OpInfo::from(x->mine);
  fail(fmt::format("{}: world rank {} called {} as #{}: the ranks disagree on the order of "
                   "collectives",
                   where(mine), world_ranks[x->member], what(OpInfo::from(x->theirs)),
                   x->theirs.seq));
}

// ---- MpiWork ----

MpiWork::~MpiWork() {
  if (done_) return;
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  if (ring_) {
    orphan_ring();
    return;
  }
  if (request_ == MPI_REQUEST_NULL) return;
  int flag = 0;
  if (MPI_Test(&request_, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) return;
  g_->orphans.push_back({request_, op_.kind == OpKind::recv, std::move(a_), std::move(b_),
                         std::move(counts_), std::move(displs_)});
}

bool MpiWork::test() {
  if (!done_) poll();
  return done_;
}

void MpiWork::wait() {
  if (done_) return;
  const auto start = Clock::now();
  // Clamped to 30 years: a larger timeout would overflow the clock's nanoseconds.
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(std::min(g_->timeout, 1e9)));
  auto next_drain = start + std::chrono::milliseconds(20);
  // MpiCommOptions::on_blocked: told what this wait is blocked on, and that
  // it no longer is (also when it throws).
  auto next_report = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(std::min(g_->blocked_after_s, 1e9)));
  bool reported = false;
  auto next_beat = start;
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  struct Unreport {
    MpiGroup& g;
    bool& reported;
    ~Unreport() {
      if (reported && g.on_blocked) g.on_blocked("");
    }
  } unreport{*g_, reported};
  while (!poll()) {
    // Another operation of the group failed: this one would only wait out
    // its own timeout (the ranks are no longer in step).
    if (!g_->failure.empty())
      throw RuntimeError(fmt::format("{} cannot complete: the group failed earlier: {}",
                                     g_->where(op_), g_->failure));
    auto now = Clock::now();
    if (now >= deadline) {
      g_->stats.wait_seconds += std::chrono::duration<double>(now - start).count();
      g_->fail(fmt::format("{} did not complete within {} s: {}", g_->where(op_), g_->timeout,
                           g_->diagnose(op_, seconds(now - start))));
    }
    // Blocked a second: the other members hear that this one waits (each
    // second), and whoever must explain a stop hears what it waits on.
    if (now >= next_beat && now - start >= std::chrono::seconds(1)) {
      if (g_->board && op_.collective()) g_->board->heartbeat(op_.seq);
      next_beat = now + std::chrono::seconds(1);
    }
    if (g_->on_blocked && now >= next_report) {
      g_->on_blocked(fmt::format("{}: {}", g_->where(op_), g_->diagnose(op_, seconds(now - start))));
      reported = true;
      next_report = now + std::chrono::seconds(1);
    }
    if (g_->board && op_.collective() && now >= next_drain) {
      g_->board->drain();
      g_->check_mismatch();
      next_drain = now + std::chrono::milliseconds(20);
    }
    // Spin first (latency), then yield to ranks sharing the core. A
    // collective never sleeps: MPI advances it only inside MPI calls, and a
    // 50 us nap per poll made a 64 MiB all-reduce 40% slower. A point-to-point
    // wait past 2 ms is a pipeline stage waiting for its neighbour: it naps,
    // so that where ranks outnumber cores the waiting rank is not runnable
    // and the kernel moves busy ranks onto its core (a yielding waiter keeps
    // its core looking busy, and a run whose busy ranks started on one core
    // stayed 2x slower throughout; tools/bench/plan_results.md).
    const auto waited = now - start;
    if (waited > std::chrono::milliseconds(2) && !op_.collective())
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    else if (waited > std::chrono::microseconds(200))
      std::this_thread::yield();
  }
  g_->stats.wait_seconds += std::chrono::duration<double>(Clock::now() - start).count();
}

void MpiWork::orphan_ring() {
  // The step in flight keeps the ring's buffer (and the input, read by the
  // next step that will not come) until MPI is done with it.
  for (MPI_Request& r : std::span(ring_->requests(), 2))
    if (r != MPI_REQUEST_NULL) g_->orphans.push_back({r, false, ring_->scratch(), a_, {}, {}});
}

int MpiWork::run(std::unique_ptr<RingReduceScatter> ring) {
  ring_ = std::move(ring);
  return ring_->start();
}

bool MpiWork::poll() {
  MPI_Status status;
  int flag = 0;
  int rc;
  if (ring_) {
    bool finished = false;
    rc = ring_->progress(&finished);
    flag = finished;
    if (rc != MPI_SUCCESS) orphan_ring();
  } else {
    rc = MPI_Test(&request_, &flag, &status);
  }
  if (rc != MPI_SUCCESS) {
    request_ = MPI_REQUEST_NULL;  // MPI released it with the error
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
  if (ring_) {
    g_->keep_ring_buffer(ring_->scratch());
    ring_.reset();
  }
  return true;
}

}  // namespace dtrain::detail
