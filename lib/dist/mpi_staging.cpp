// MpiCommunicator's operations on device tensors (staging.h): each copies its
// inputs into pooled pinned buffers after the compute stream's work, posts
// the same MPI operation on the host buffers (in place, so that every member
// calls the same form), and returns a StagedWork that copies the results back
// when the operation completes.
#include <utility>

#include "dist/mpi_communicator.h"
#include "dist/mpi_group.h"

namespace dtrain {

namespace {

// Marks the group while a staged operation posts its host operation, so
// that the public call it makes does not stage again.
class InnerScope {
 public:
  explicit InnerScope(detail::MpiGroup& g) : g_(g) { g_.staging_inner = true; }
  ~InnerScope() { g_.staging_inner = false; }

 private:
  detail::MpiGroup& g_;
};

// The leases of one operation: returned to the pool unless a StagedWork took them.
struct Leases {
  explicit Leases(std::shared_ptr<StagingPool> p) : pool(std::move(p)) {}
  ~Leases() {
    for (int s : slots) pool->give_back(s);
  }
  Tensor take(DType t, int64_t n) {
    StagingPool::Lease l = pool->take(t, n);
    slots.push_back(l.slot);
    return l.host;
  }
  std::vector<int> release() { return std::exchange(slots, {}); }

  std::shared_ptr<StagingPool> pool;
  std::vector<int> slots;
};

}  // namespace

void MpiCommunicator::set_compute_stream(void* stream) {
  g_->compute_stream = stream;
  if (!g_->copier_given) g_->copier.reset();  // remade on the new stream
}

void MpiCommunicator::set_staging(std::shared_ptr<StagingCopier> copier,
                                  StagingPool::Allocate allocate) {
  g_->copier = std::move(copier);
  g_->copier_given = g_->copier != nullptr;
  g_->staging_allocate = std::move(allocate);
  g_->pool.reset();
}

const StagingPool* MpiCommunicator::staging_pool() const { return g_->pool.get(); }

bool MpiCommunicator::staged(const char* op, const Tensor& a, const Tensor& b) {
  detail::MpiGroup& g = *g_;
  if (g.staging_inner) return false;
  auto on_device = [&](const Tensor& t) {
    return g.copier ? g.copier->stages(t) : t.defined() && !t.device().is_cpu();
  };
  const bool da = on_device(a), db = b.defined() && on_device(b);
  if (!da && !db) return false;
  if (b.defined() && da != db)
    throw RuntimeError(fmt::format("{} on group '{}': the input is on {} and the output on {}; "
                                   "both must be on one device",
                                   op, g.name, a.device().str(), b.device().str()));
  if (b.defined() && !(a.device() == b.device()))
    throw RuntimeError(fmt::format("{} on group '{}': the input is on {} and the output on {}",
                                   op, g.name, a.device().str(), b.device().str()));
  if (!g.copier) {
    try {
      g.copier = cuda_staging_copier(g.compute_stream);
    } catch (const RuntimeError& e) {
      throw RuntimeError(fmt::format("{} on group '{}': the tensor is on {}: {}", op, g.name,
                                     a.device().str(), e.what()));
    }
  }
  if (!g.pool) g.pool = std::make_shared<StagingPool>(g.staging_allocate);
  return true;
}

WorkHandle MpiCommunicator::staged_all_reduce(Tensor t, ReduceOp op) {
  detail::MpiGroup& g = *g_;
  Leases leases(g.pool);
  Tensor h = leases.take(t.dtype(), t.numel());
  g.copier->to_host(h, t);
  WorkHandle inner;
  {
    InnerScope scope(g);
    inner = all_reduce(h, op);
  }
  return std::make_unique<StagedWork>(std::move(inner), std::vector<StagedWork::Back>{{t, h}},
                                      g.copier, g.pool, leases.release());
}

WorkHandle MpiCommunicator::staged_reduce_scatter(Tensor in, Tensor out, ReduceOp op,
                                                  std::vector<int64_t> counts) {
  detail::MpiGroup& g = *g_;
  DTRAIN_CHECK(in.dtype() == out.dtype(), "reduce_scatter on group '{}': {} input, {} output",
               g.name, dtype_name(in.dtype()), dtype_name(out.dtype()));
  DTRAIN_CHECK(out.numel() <= in.numel(),
               "reduce_scatter on group '{}': output of {} elements, input of {}", g.name,
               out.numel(), in.numel());
  Leases leases(g.pool);
  Tensor h = leases.take(in.dtype(), in.numel());
  g.copier->to_host(h, in);
  Tensor h_out = h.flat_range(0, out.numel());  // in place: the result starts the buffer
  WorkHandle inner;
  {
    InnerScope scope(g);
    inner = reduce_scatter(h, h_out, op, std::move(counts));
  }
  return std::make_unique<StagedWork>(std::move(inner), std::vector<StagedWork::Back>{{out, h_out}},
                                      g.copier, g.pool, leases.release());
}

WorkHandle MpiCommunicator::staged_all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) {
  detail::MpiGroup& g = *g_;
  // This member's place in the output, when the counts make sense (else the
  // host call below refuses them with its own message).
  int64_t offset = -1;
  if (counts.empty()) {
    if (g.size > 0 && out.numel() % g.size == 0) offset = g.rank * (out.numel() / g.size);
  } else if (static_cast<int>(counts.size()) == g.size) {
    offset = 0;
    for (int m = 0; m < g.rank; ++m) offset += counts[m];
  }
  Leases leases(g.pool);
  Tensor h_out = leases.take(out.dtype(), out.numel());
  Tensor h_in;
  if (offset >= 0 && offset + in.numel() <= out.numel() && in.dtype() == out.dtype())
    h_in = h_out.flat_range(offset, in.numel());  // in place, on every member
  else
    h_in = leases.take(in.dtype(), in.numel());
  g.copier->to_host(h_in, in);
  WorkHandle inner;
  {
    InnerScope scope(g);
    inner = all_gather(h_in, h_out, std::move(counts));
  }
  return std::make_unique<StagedWork>(std::move(inner), std::vector<StagedWork::Back>{{out, h_out}},
                                      g.copier, g.pool, leases.release());
}

WorkHandle MpiCommunicator::staged_broadcast(Tensor t, int root) {
  detail::MpiGroup& g = *g_;
  Leases leases(g.pool);
  Tensor h = leases.take(t.dtype(), t.numel());
  const bool sends = root == g.rank;
  if (sends) g.copier->to_host(h, t);
  WorkHandle inner;
  {
    InnerScope scope(g);
    inner = broadcast(h, root);
  }
  std::vector<StagedWork::Back> back;
  if (!sends) back.push_back({t, h});
  return std::make_unique<StagedWork>(std::move(inner), std::move(back), g.copier, g.pool,
                                      leases.release());
}

WorkHandle MpiCommunicator::staged_p2p(Tensor t, int peer, int tag, bool sending) {
  detail::MpiGroup& g = *g_;
  Leases leases(g.pool);
  Tensor h = leases.take(t.dtype(), t.numel());
  if (sending) g.copier->to_host(h, t);
  WorkHandle inner;
  {
    InnerScope scope(g);
    inner = sending ? send(h, peer, tag) : recv(h, peer, tag);
  }
  std::vector<StagedWork::Back> back;
  if (!sending) back.push_back({t, h});
  return std::make_unique<StagedWork>(std::move(inner), std::move(back), g.copier, g.pool,
                                      leases.release());
}

}  // namespace dtrain
