// NcclRuntime and NcclCommunicator (nccl_communicator.h): the only file that
// includes nccl.h. Streams and events go through core/device.h.
#include "dist/nccl_communicator.h"

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "core/device.h"
#include "dist/comm_watchdog.h"
#include "dist/mpi_group.h"
#include "dist/mpi_runtime.h"

namespace dtrain {

using detail::OpInfo;
using detail::OpKind;

std::string nccl_version_string(int code) {
  return fmt::format("{}.{}.{}", code / 10000, code / 100 % 100, code % 100);
}

bool nccl_same_major(int compiled, int loaded) { return compiled / 10000 == loaded / 10000; }

namespace {

int loaded_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) throw RuntimeError("ncclGetVersion failed");
  return v;
}

std::string nccl_error(ncclResult_t r, ncclComm_t c) {
  std::string s = ncclGetErrorString(r);
  const char* last = c ? ncclGetLastError(c) : nullptr;
  if (last && *last) s += fmt::format(" ({})", last);
  return s;
}

ncclDataType_t nccl_type(DType t, const std::string& group) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::u8: return ncclUint8;
  }
  throw RuntimeError(fmt::format("group '{}': {} tensors are not supported by NCCL", group, dtype_name(t)));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  throw InternalError("unknown ReduceOp");
}

cudaStream_t cs(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

std::string nccl_report() {
  return fmt::format("NCCL {} (compiled {})", nccl_version_string(loaded_version()),
                     nccl_version_string(NCCL_VERSION_CODE));
}

void nccl_check_version() {
  const int loaded = loaded_version();
  if (!nccl_same_major(NCCL_VERSION_CODE, loaded))
    throw RuntimeError(fmt::format("NCCL {} is loaded but dtrain was built with NCCL {}: the major "
                                   "versions differ",
                                   nccl_version_string(loaded), nccl_version_string(NCCL_VERSION_CODE)));
}

namespace detail {

// A CUDA event shared by a Work and the watchdog's record of its operation.
struct Event {
  void* e = gpu::event_create(false);
  ~Event() { gpu::event_destroy(e); }
};

struct Pending {
  std::shared_ptr<Event> done;
  std::vector<Tensor> keep;  // device memory NCCL uses until done
  OpInfo op;
  MpiCommunicator* twin = nullptr;
};

struct NcclState {
  int device = 0;
  double timeout = 300;
  ncclComm_t world = nullptr;
  std::mutex mu;  // comms, pending (the watchdog thread reads them)
  // Held while this rank's thread calls NCCL on a communicator (an operation,
  // a poll of its state) and while the watchdog thread aborts them all:
  // ncclCommAbort frees a communicator, so no call may be on one while it
  // runs, nor come after it (`aborted`). Recursive: an operation's calls may
  // settle a first part before the next (reduce_scatter in place). Taken
  // before `mu` where both are.
  std::recursive_mutex use;
  bool aborted = false;  // under `use` and `mu`
  std::vector<std::pair<std::string, ncclComm_t>> comms;
  std::map<uint64_t, Pending> pending;
  std::unique_ptr<CommWatchdog> watchdog;
  std::thread thread;
  std::mutex thread_mu;
  std::condition_variable cv;
  bool stop = false;

  NcclState(int dev, double timeout_s);
  ~NcclState();

  // Waits out a non-blocking call: ncclInProgress -> poll the communicator's
  // async error until it settles, up to the timeout.
  void settle(ncclComm_t c, ncclResult_t r, const char* call, const std::string& group);
  void check();
  void abort_all();
  // With `use` held: throws when the watchdog has aborted the communicators
  // (its failure, naming the operation that did not complete, first).
  void require_live(const char* call, const std::string& group);
};

NcclState::NcclState(int dev, double timeout_s) : device(dev), timeout(timeout_s) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  CommWatchdogHooks hooks;
  hooks.now = [t0] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  hooks.done = [this](uint64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = pending.find(id);
    if (it == pending.end()) return false;  // registered, not yet recorded
    if (!gpu::event_done(it->second.done->e)) return false;
    pending.erase(it);
    return true;
  };
  hooks.async_error = [this](const std::string& group) -> std::string {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [name, c] : comms) {
      if (name != group) continue;
      ncclResult_t st = ncclSuccess;
      ncclCommGetAsyncError(c, &st);
      if (st != ncclSuccess && st != ncclInProgress) return nccl_error(st, c);
    }
    return {};
  };
  hooks.abort = [this] { abort_all(); };
  watchdog = std::make_unique<CommWatchdog>(std::move(hooks));
}

void NcclState::abort_all() {
  std::lock_guard<std::recursive_mutex> in_use(use);
  std::lock_guard<std::mutex> lock(mu);
  aborted = true;
  for (auto& [name, c] : comms) ncclCommAbort(c);
  comms.clear();  // gone: nothing to destroy later
}

NcclState::~NcclState() {
  if (thread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(thread_mu);
      stop = true;
    }
    cv.notify_all();
    thread.join();
  }
  // Finalise (flushes what was issued), then destroy; abort what does not settle.
  for (auto& [name, c] : comms) {
    ncclResult_t r = ncclCommFinalize(c);
    try {
      settle(c, r, "ncclCommFinalize", name);
      ncclCommDestroy(c);
    } catch (const std::exception&) {
      ncclCommAbort(c);
    }
  }
}

void NcclState::require_live(const char* call, const std::string& group) {
  if (!aborted) return;
  check();  // throws the watchdog's failure
  throw RuntimeError(fmt::format("{} on group '{}': the NCCL communicators were aborted after a collective "
                                 "did not complete",
                                 call, group));
}

void NcclState::settle(ncclComm_t c, ncclResult_t r, const char* call, const std::string& group) {
  if (r == ncclSuccess) return;
  std::unique_lock<std::recursive_mutex> in_use(use);
  require_live(call, group);
  if (r != ncclInProgress)
    throw RuntimeError(fmt::format("{} on group '{}' failed: {}", call, group, nccl_error(r, c)));
  in_use.unlock();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  for (int spins = 0;; ++spins) {
    // One poll at a time under `use`: between polls the watchdog may abort.
    std::unique_lock<std::recursive_mutex> polling(use);
    require_live(call, group);
    ncclResult_t st = ncclInProgress;
    ncclResult_t q = ncclCommGetAsyncError(c, &st);
    if (q != ncclSuccess)
      throw RuntimeError(fmt::format("ncclCommGetAsyncError after {} on group '{}': {}", call, group,
                                     nccl_error(q, c)));
    if (st == ncclSuccess) return;
    if (st != ncclInProgress)
      throw RuntimeError(fmt::format("{} on group '{}' failed: {}", call, group, nccl_error(st, c)));
    polling.unlock();
    if (std::chrono::steady_clock::now() > deadline)
      throw RuntimeError(fmt::format("{} on group '{}' did not complete within {:g} s (a rank that "
                                     "did not call it?)",
                                     call, group, timeout));
    if (spins > 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void NcclState::check() {
  watchdog->check([this](const CommWatchdog::Failure& f) -> std::string {
    std::lock_guard<std::mutex> lock(mu);
    auto it = pending.find(f.id);
    if (it == pending.end() || !it->second.twin || !it->second.op.collective()) return {};
    try {
      return it->second.twin->explain_device(it->second.op);
    } catch (const std::exception& e) {
      return fmt::format("(which ranks did not arrive is unknown: {})", e.what());
    }
  });
}

}  // namespace detail

using detail::Event;
using detail::NcclState;

// ---- NcclRuntime ----

NcclRuntime::NcclRuntime(int device, MpiCommunicator& world_twin, double timeout_s)
    : s_(std::make_shared<NcclState>(device, timeout_s)) {
  nccl_check_version();
  gpu::set_device(device);
  ncclUniqueId id{};
  if (world_twin.rank() == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) throw RuntimeError(fmt::format("ncclGetUniqueId failed: {}", nccl_error(r, nullptr)));
  }
  mpi_check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, world_twin.handle()), "MPI_Bcast (NCCL unique id)");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&s_->world, world_twin.size(), id, world_twin.rank(), &config);
  s_->settle(s_->world, r, "ncclCommInitRankConfig", "world");
  s_->comms.push_back({"world", s_->world});
  NcclState* s = s_.get();
  s_->thread = std::thread([s] {
    gpu::set_device(s->device);
    std::unique_lock<std::mutex> lock(s->thread_mu);
    while (!s->cv.wait_for(lock, std::chrono::milliseconds(100), [s] { return s->stop; })) {
      try {
        s->watchdog->poll();
      } catch (const std::exception&) {
        // A CUDA error while polling: the next check on the main thread sees it.
      }
    }
  });
}

NcclRuntime::~NcclRuntime() = default;

void NcclRuntime::check() { s_->check(); }
bool NcclRuntime::failed() const { return s_->watchdog->failed(); }
void NcclRuntime::set_timeout(double seconds) {
  DTRAIN_CHECK(seconds > 0, "NCCL timeout {} s", seconds);
  s_->timeout = seconds;
}

// ---- NcclCommunicator ----

struct NcclCommunicator::Impl {
  std::shared_ptr<NcclState> s;
  ncclComm_t comm = nullptr;
  MpiCommunicator* twin = nullptr;
  std::string name;
  int rank = 0, size = 1;
  void* stream = nullptr;   // the group's communication stream
  void* compute = nullptr;  // the compute stream (null = default)
  void* ready = nullptr;    // event: the compute stream's work so far
  double timeout = 300;
  CommStats stats;

  ~Impl() {
    if (ready) gpu::event_destroy(ready);
    if (stream) gpu::stream_destroy(stream);
  }

  // All device (true), all host (false), or refused.
  bool on_device(const char* op, const Tensor& a, const Tensor& b = {}) const {
    DTRAIN_CHECK(a.defined(), "{} on group '{}': undefined tensor", op, name);
    const bool da = !a.device().is_cpu();
    if (b.defined() && !(a.device() == b.device()))
      throw RuntimeError(fmt::format("{} on group '{}': the input is on {} and the output on {}; "
                                     "both must be on one device",
                                     op, name, a.device().str(), b.device().str()));
    if (da && a.device().index != s->device)
      throw RuntimeError(fmt::format("{} on group '{}': the tensor is on {}, this rank's NCCL on cuda:{}",
                                     op, name, a.device().str(), s->device));
    return da;
  }

  std::vector<int64_t> parts(const char* op, const std::vector<int64_t>& counts, int64_t total) const {
    if (counts.empty()) {
      DTRAIN_CHECK(total % size == 0, "{} on group '{}': {} elements do not split into {} equal parts",
                   op, name, total, size);
      return std::vector<int64_t>(size, total / size);
    }
    DTRAIN_CHECK(static_cast<int>(counts.size()) == size, "{} on group '{}': {} counts for {} members",
                 op, name, counts.size(), size);
    int64_t sum = 0;
    for (int64_t c : counts) {
      DTRAIN_CHECK(c >= 0, "{} on group '{}': negative count", op, name);
      sum += c;
    }
    DTRAIN_CHECK(sum == total, "{} on group '{}': counts sum to {}, the tensor has {} elements", op,
                 name, sum, total);
    return counts;
  }

  // Orders the comm stream after the compute stream, runs `calls` (the NCCL
  // calls, returning their result) and returns the device-ordered Work.
  template <class F>
  WorkHandle issue(OpInfo op, std::vector<Tensor> keep, size_t bytes, F&& calls);
};

namespace {

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<NcclState> s, std::shared_ptr<Event> done, void* compute)
      : s_(std::move(s)), done_(std::move(done)), compute_(compute) {}
  void wait() override {
    s_->check();
    if (!waited_) gpu::stream_wait_event(compute_, done_->e);
    waited_ = true;
  }
  bool test() override {
    s_->check();
    return gpu::event_done(done_->e);
  }

 private:
  std::shared_ptr<NcclState> s_;
  std::shared_ptr<Event> done_;
  void* compute_;
  bool waited_ = false;
};

}  // namespace

template <class F>
WorkHandle NcclCommunicator::Impl::issue(OpInfo op, std::vector<Tensor> keep, size_t bytes, F&& calls) {
  s->check();
  if (op.collective()) twin->announce_device(op);  // numbers it (op.seq)
  gpu::event_record(ready, compute);
  gpu::stream_wait_event(stream, ready);
  ncclResult_t r;
  {
    std::lock_guard<std::recursive_mutex> in_use(s->use);
    s->require_live(detail::op_kind_name(op.kind), name);
    r = calls();
  }
  s->settle(comm, r, detail::op_kind_name(op.kind), name);
  auto done = std::make_shared<Event>();
  gpu::event_record(done->e, stream);
  const uint64_t id = s->watchdog->begin(twin->describe(op), name, op.seq, timeout);
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->pending[id] = {done, std::move(keep), op, twin};
  }
  ++stats.ops;
  stats.bytes += static_cast<double>(bytes);
  return std::make_unique<NcclWork>(s, std::move(done), compute);
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl) : p_(std::move(impl)) {}
NcclCommunicator::~NcclCommunicator() = default;

std::unique_ptr<NcclCommunicator> NcclRuntime::split(const std::string& name, int color, int key,
                                                     MpiCommunicator& twin) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t c = nullptr;
  ncclResult_t r;
  {
    std::lock_guard<std::recursive_mutex> in_use(s_->use);
    s_->require_live("ncclCommSplit", name);
    r = ncclCommSplit(s_->world, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &c, &config);
  }
  // Non-blocking, the split runs as an asynchronous job of the parent's: NCCL
  // writes `c` only once it completes ("*newcomm should be NCCL_COMM_NULL
  // until comm split fully complete", init.cc), and returns ncclSuccess,
  // not ncclInProgress, while it runs (2.28.9 on an H200: the group came back
  // null). So wait on the parent (polling it also completes its linked group
  // job) until it is done and, for a member, until `c` is written.
  s_->settle(s_->world, r == ncclSuccess ? ncclInProgress : r, "ncclCommSplit", name);
  if (color < 0) return nullptr;
  std::atomic_ref<ncclComm_t> written(c);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(s_->timeout);
  while (!written.load(std::memory_order_acquire)) {
    s_->settle(s_->world, ncclInProgress, "ncclCommSplit", name);
    if (std::chrono::steady_clock::now() > deadline)
      throw RuntimeError(fmt::format("ncclCommSplit for group '{}' gave no communicator within {:g} s", name,
                                     s_->timeout));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  s_->settle(c, ncclInProgress, "ncclCommSplit", name);
  auto impl = std::make_unique<NcclCommunicator::Impl>();
  impl->s = s_;
  impl->comm = c;
  impl->twin = &twin;
  impl->name = name;
  impl->timeout = s_->timeout;
  ncclCommUserRank(c, &impl->rank);
  ncclCommCount(c, &impl->size);
  DTRAIN_CHECK(impl->size == twin.size() && impl->rank == twin.rank(),
               "NCCL group '{}' (member {} of {}) differs from its MPI twin (member {} of {})", name,
               impl->rank, impl->size, twin.rank(), twin.size());
  impl->stream = gpu::stream_create();
  impl->ready = gpu::event_create(false);
  {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->comms.push_back({name, c});
  }
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl)));
}

std::unique_ptr<NcclCommunicator> NcclRuntime::world(MpiCommunicator& twin) {
  return split("world", 0, twin.rank(), twin);
}

int NcclCommunicator::rank() const { return p_->rank; }
int NcclCommunicator::size() const { return p_->size; }
const std::string& NcclCommunicator::name() const { return p_->name; }
int NcclCommunicator::world_rank(int r) const { return p_->twin->world_rank(r); }
void NcclCommunicator::set_compute_stream(void* stream) {
  p_->compute = stream;
  p_->twin->set_compute_stream(stream);
}
void NcclCommunicator::set_timeout(double seconds) {
  DTRAIN_CHECK(seconds > 0, "group '{}': timeout {} s", p_->name, seconds);
  p_->timeout = seconds;
  p_->twin->set_timeout(seconds);
}
const CommStats& NcclCommunicator::stats() const { return p_->stats; }
void* NcclCommunicator::comm_stream() const { return p_->stream; }

WorkHandle NcclCommunicator::barrier() { return p_->twin->barrier(); }

WorkHandle NcclCommunicator::all_reduce(Tensor t, ReduceOp rop) {
  Impl& p = *p_;
  if (!p.on_device("all_reduce", t)) return p.twin->all_reduce(std::move(t), rop);
  OpInfo op{.kind = OpKind::all_reduce, .dtype = t.dtype(), .count = t.numel(), .reduce = rop};
  const ncclDataType_t type = nccl_type(t.dtype(), p.name);
  void* ptr = t.raw();
  const size_t n = static_cast<size_t>(t.numel());
  return p.issue(op, {t}, t.bytes(), [&] {
    return ncclAllReduce(ptr, ptr, n, type, nccl_op(rop), p.comm, cs(p.stream));
  });
}

WorkHandle NcclCommunicator::broadcast(Tensor t, int root) {
  Impl& p = *p_;
  if (!p.on_device("broadcast", t)) return p.twin->broadcast(std::move(t), root);
  DTRAIN_CHECK(root >= 0 && root < p.size, "broadcast on group '{}' of {} members from member {}",
               p.name, p.size, root);
  OpInfo op{.kind = OpKind::broadcast, .dtype = t.dtype(), .count = t.numel(), .member = root};
  const ncclDataType_t type = nccl_type(t.dtype(), p.name);
  void* ptr = t.raw();
  const size_t n = static_cast<size_t>(t.numel());
  return p.issue(op, {t}, t.bytes(),
                 [&] { return ncclBroadcast(ptr, ptr, n, type, root, p.comm, cs(p.stream)); });
}

WorkHandle NcclCommunicator::all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) {
  Impl& p = *p_;
  if (!p.on_device("all_gather", in, out)) return p.twin->all_gather(std::move(in), std::move(out), std::move(counts));
  DTRAIN_CHECK(in.dtype() == out.dtype(), "all_gather on group '{}': {} input, {} output", p.name,
               dtype_name(in.dtype()), dtype_name(out.dtype()));
  std::vector<int64_t> parts = p.parts("all_gather", counts, out.numel());
  DTRAIN_CHECK(in.numel() == parts[p.rank],
               "all_gather on group '{}': member {} gives {} elements, the input has {}", p.name,
               p.rank, parts[p.rank], in.numel());
  bool uneven = false;
  for (int64_t c : parts) uneven = uneven || c != parts[0];
  OpInfo op{.kind = OpKind::all_gather, .dtype = out.dtype(), .count = out.numel(), .uneven = uneven};
  const ncclDataType_t type = nccl_type(out.dtype(), p.name);
  const size_t es = dtype_size(out.dtype());
  char* base = static_cast<char*>(out.raw());
  const void* src = in.raw();
  return p.issue(op, {in, out}, in.bytes(), [&]() -> ncclResult_t {
    if (!uneven) return ncclAllGather(src, base, static_cast<size_t>(parts[0]), type, p.comm, cs(p.stream));
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) return r;
    int64_t off = 0;
    for (int m = 0; m < p.size; ++m) {
      if (parts[m] > 0) {
        void* dst = base + static_cast<size_t>(off) * es;
        r = ncclBroadcast(m == p.rank ? src : dst, dst, static_cast<size_t>(parts[m]), type, m, p.comm,
                          cs(p.stream));
        if (r != ncclSuccess && r != ncclInProgress) {
          ncclGroupEnd();
          return r;
        }
      }
      off += parts[m];
    }
    return ncclGroupEnd();
  });
}

WorkHandle NcclCommunicator::reduce_scatter(Tensor in, Tensor out, ReduceOp rop, std::vector<int64_t> counts) {
  Impl& p = *p_;
  if (!p.on_device("reduce_scatter", in, out))
    return p.twin->reduce_scatter(std::move(in), std::move(out), rop, std::move(counts));
  DTRAIN_CHECK(in.dtype() == out.dtype(), "reduce_scatter on group '{}': {} input, {} output", p.name,
               dtype_name(in.dtype()), dtype_name(out.dtype()));
  std::vector<int64_t> parts = p.parts("reduce_scatter", counts, in.numel());
  DTRAIN_CHECK(out.numel() == parts[p.rank],
               "reduce_scatter on group '{}': member {} gets {} elements, the output has {}", p.name,
               p.rank, parts[p.rank], out.numel());
  bool uneven = false;
  for (int64_t c : parts) uneven = uneven || c != parts[0];
  int64_t own = 0;
  for (int m = 0; m < p.rank; ++m) own += parts[m];
  const size_t es = dtype_size(in.dtype());
  char* base = static_cast<char*>(in.raw());
  char* dst = static_cast<char*>(out.raw());
  char* own_part = base + static_cast<size_t>(own) * es;
  const size_t out_bytes = out.bytes();
  // The Communicator's in-place form (the output starts the input) is not
  // NCCL's (the output is this member's part): reduce into the part, then
  // move it, unless the two overlap (uneven parts only).
  const bool moved = dst == base && own_part != base;
  DTRAIN_CHECK(!moved || static_cast<size_t>(own) * es >= out_bytes,
               "reduce_scatter on group '{}': in place with uneven parts whose member {} part "
               "overlaps the start of the input; use a separate output",
               p.name, p.rank);
  char* target = moved ? own_part : dst;
  OpInfo op{.kind = OpKind::reduce_scatter, .dtype = in.dtype(), .count = in.numel(), .reduce = rop,
            .uneven = uneven};
  const ncclDataType_t type = nccl_type(in.dtype(), p.name);
  return p.issue(op, {in, out}, in.bytes(), [&]() -> ncclResult_t {
    ncclResult_t r;
    if (!uneven) {
      r = ncclReduceScatter(base, target, static_cast<size_t>(parts[0]), type, nccl_op(rop), p.comm,
                            cs(p.stream));
    } else {
      r = ncclGroupStart();
      if (r != ncclSuccess) return r;
      int64_t off = 0;
      for (int m = 0; m < p.size; ++m) {
        if (parts[m] > 0) {
          char* part = base + static_cast<size_t>(off) * es;
          ncclResult_t q = ncclReduce(part, m == p.rank ? target : part, static_cast<size_t>(parts[m]),
                                      type, nccl_op(rop), m, p.comm, cs(p.stream));
          if (q != ncclSuccess && q != ncclInProgress) {
            ncclGroupEnd();
            return q;
          }
        }
        off += parts[m];
      }
      r = ncclGroupEnd();
    }
    if (moved && (r == ncclSuccess || r == ncclInProgress)) {
      p.s->settle(p.comm, r, "reduce_scatter", p.name);
      gpu::memcpy(dst, target, out_bytes, p.stream);  // on the comm stream, before `done`
      return ncclSuccess;
    }
    return r;
  });
}

namespace {

ncclResult_t post_p2p(NcclCommunicator::Impl& p, const P2POp& o) {
  void* ptr = o.tensor.raw();
  const size_t n = static_cast<size_t>(o.tensor.numel());
  const ncclDataType_t type = nccl_type(o.tensor.dtype(), p.name);
  return o.kind == P2POp::Kind::send ? ncclSend(ptr, n, type, o.peer, p.comm, cs(p.stream))
                                     : ncclRecv(ptr, n, type, o.peer, p.comm, cs(p.stream));
}

}  // namespace

WorkHandle NcclCommunicator::batch_p2p(std::vector<P2POp> ops) {
  Impl& p = *p_;
  DTRAIN_CHECK(!ops.empty(), "batch_p2p on group '{}': no operations", p.name);
  bool any_device = false, any_host = false;
  for (const P2POp& o : ops) {
    const char* verb = o.kind == P2POp::Kind::send ? "send" : "recv";
    (p.on_device(verb, o.tensor) ? any_device : any_host) = true;
    DTRAIN_CHECK(o.peer >= 0 && o.peer < p.size, "{} on group '{}' of {} members with member {}",
                 verb, p.name, p.size, o.peer);
  }
  if (!any_device) return p.twin->batch_p2p(std::move(ops));
  DTRAIN_CHECK(!any_host, "batch_p2p on group '{}': host and device tensors in one batch", p.name);
  const P2POp& first = ops.front();
  OpInfo op{.kind = first.kind == P2POp::Kind::send ? OpKind::send : OpKind::recv,
            .dtype = first.tensor.dtype(), .count = first.tensor.numel(), .member = first.peer,
            .tag = first.tag};
  size_t bytes = 0;
  for (const P2POp& o : ops) bytes += o.tensor.bytes();
  std::vector<Tensor> keep;
  for (const P2POp& o : ops) keep.push_back(o.tensor);
  return p.issue(op, std::move(keep), bytes, [&]() -> ncclResult_t {
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) return r;
    for (const P2POp& o : ops) {
      ncclResult_t q = post_p2p(p, o);
      if (q != ncclSuccess && q != ncclInProgress) {
        ncclGroupEnd();
        return q;
      }
    }
    return ncclGroupEnd();
  });
}

WorkHandle NcclCommunicator::send(Tensor t, int peer, int tag) {
  if (!p_->on_device("send", t)) return p_->twin->send(std::move(t), peer, tag);
  return batch_p2p({{P2POp::Kind::send, std::move(t), peer, tag}});
}

WorkHandle NcclCommunicator::recv(Tensor t, int peer, int tag) {
  if (!p_->on_device("recv", t)) return p_->twin->recv(std::move(t), peer, tag);
  return batch_p2p({{P2POp::Kind::recv, std::move(t), peer, tag}});
}

}  // namespace dtrain
