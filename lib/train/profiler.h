// Where a step's time goes, measured on one rank. The trainer holds an
// optional Profiler* (TrainerOptions::profiler) and wraps its top-level layer
// loops, the loss, the data fill, the pipeline waits, the exposed gradient
// reduction and the optimizer in Profiler::Scope timers: one steady_clock
// read at each end, so `dtrain run` with log.profile = true can afford them.
// `dtrain profile` also records every scope (and every collective, through
// RecordingCommunicator) as a trace event for the Chrome trace.
//
// A Profiler belongs to one trainer on one rank; nothing here is global.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/runtime.h"

namespace dtrain {

// Marks on a device's compute stream, read back once the device has passed
// them: how the profiler times work queued on a GPU (CUDA events, one pair
// per scope) without making the host wait for the device around each scope.
class DeviceTimer {
 public:
  virtual ~DeviceTimer() = default;
  // Records mark `id` (0, 1, 2, ... in order since clear()) on the stream.
  virtual void mark(size_t id) = 0;
  // Seconds from mark 0 to mark `id`; waits until the device has passed it.
  virtual double seconds(size_t id) = 0;
  // Forgets the marks (their events are kept for the next ones).
  virtual void clear() = 0;
};

// The CUDA events of core/device.h on `stream`: a pool that grows to the
// marks of one step (events made in the first profiled step) and is reused.
std::unique_ptr<DeviceTimer> make_cuda_event_timer(void* stream);

// One interval on one of a rank's two streams, in seconds since the
// profiler's origin.
struct TraceEvent {
  enum class Stream : uint8_t { compute, comm };
  Stream stream = Stream::compute;
  std::string name;  // "blocks.1 fwd", "dp all_reduce"
  std::string cat;   // "forward", "backward", "loss", "data", "optimizer", "dp", "pp", ...
  double begin = 0;
  double end = 0;
  int micro = -1;     // micro-batch, -1 for none
  double bytes = -1;  // payload of a collective, -1 for none
};

// A communicator's operations since reset(): busy = the sum of their
// issue-to-completion times (they may overlap each other and compute).
// blocked = the part of busy this rank spent inside wait() on them (exposed);
// the rest was hidden behind compute or other work.
struct CommTotals {
  double ops = 0, bytes = 0, busy_seconds = 0, blocked_seconds = 0;
};

// The collective kinds the profile reports one by one.
enum class CommOp : uint8_t { all_reduce, reduce_scatter, all_gather, broadcast, p2p, barrier, count };
const char* comm_op_name(CommOp op);  // "all_reduce", ..., "send/recv", "barrier"

class Profiler {
 public:
  using Clock = std::chrono::steady_clock;

  // What a scope measures. Layers and the loss are indexed per stage.
  enum class Kind : uint8_t { forward, backward, data, optimizer, pp_wait, dp_wait, count };

  // `record_events`: keep a TraceEvent per scope (for the trace file).
  explicit Profiler(bool record_events = false);

  // This stage's top-level layer names; the loss (last stage only) is
  // counted at index names.size() under the name "loss".
  void set_layers(std::vector<std::string> names);
  const std::vector<std::string>& layer_names() const { return names_; }

  // Resets the accumulators and the events, and sets the time origin to now
  // (called after a world barrier, so every rank shares it closely).
  void reset();

  class Scope {
   public:
    // p == nullptr: does nothing. `index`: the layer for forward/backward.
    Scope(Profiler* p, Kind kind, int index = -1, int micro = -1)
        : p_(p), kind_(kind), index_(index), micro_(micro) {
      if (!p_) return;
      if (p_->timer_)
        mark0_ = p_->device_mark();
      else
        t0_ = Clock::now();
    }
    ~Scope() {
      if (!p_) return;
      if (p_->timer_)
        p_->add_marked(kind_, index_, micro_, mark0_, p_->device_mark());
      else
        p_->add(kind_, index_, micro_, t0_, Clock::now());
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler* p_;
    Kind kind_;
    int index_, micro_;
    Clock::time_point t0_;
    size_t mark0_ = 0;
  };

  void add(Kind kind, int index, int micro, Clock::time_point t0, Clock::time_point t1);
  // On a GPU, work is queued: with a device timer each scope records a mark
  // on the compute stream at its start and end (the host does not wait, so
  // the profile keeps training's overlap of host and device), and flush()
  // turns the marks into times. Set before reset().
  void set_device_timer(std::unique_ptr<DeviceTimer> timer);
  bool device_timed() const { return timer_ != nullptr; }
  // Resolves the scopes marked since the last flush or reset (waiting for the
  // device to pass their marks) and starts the next marks from a new origin.
  // The trainer calls it at a step's end, where the device is idle; without
  // a timer it does nothing.
  void flush();
  // A communicator operation from issue to completion (completion = when a
  // wait() returned or a test() first said done); `blocked`: seconds spent
  // inside its wait().
  void add_comm(const std::string& group, CommOp op, double bytes, Clock::time_point issued,
                Clock::time_point completed, double blocked = 0);
  // The last backward (the one that completes the gradients) starts: the
  // data-parallel buckets issued from now until the dp_wait scope ends
  // belong to the step's gradient reduction.
  void mark_reduction_begin();

  // Bytes the heap grew by while the model's activation buffers were planned.
  void set_plan_bytes(double b) { plan_bytes_ = b; }
  double plan_bytes() const { return plan_bytes_; }

  // Accumulated seconds since reset().
  double layer_seconds(size_t index, bool backward) const;
  double seconds(Kind kind) const { return totals_[static_cast<size_t>(kind)]; }
  // Data-parallel gradient reduction: seconds from the first bucket's issue
  // to the last one's completion, summed over steps (0 when dp = 1).
  double reduction_span_seconds() const { return reduce_span_; }
  const std::vector<TraceEvent>& events() const { return events_; }
  // Per group name ("dp", "tp", "pp", "embed"); zeros for one never seen.
  CommTotals comm(const std::string& group) const;
  // Per group and collective kind.
  CommTotals comm(const std::string& group, CommOp op) const;
  double now() const { return since(Clock::now()); }

 private:
  double since(Clock::time_point t) const { return std::chrono::duration<double>(t - origin_).count(); }
  void close_reduction(double end);
  // b, e: seconds since the origin.
  void add_seconds(Kind kind, int index, int micro, double b, double e);
  size_t device_mark();
  void add_marked(Kind kind, int index, int micro, size_t mark0, size_t mark1);
  void restart_marks();  // mark 0 now, at host time device_origin_

  bool record_;
  Clock::time_point origin_;
  std::vector<std::string> names_;
  std::vector<double> fwd_, bwd_;  // per layer (+ loss)
  double totals_[static_cast<size_t>(Kind::count)] = {};
  double plan_bytes_ = 0;
  std::vector<TraceEvent> events_;
  struct GroupTotals {
    std::string group;
    CommTotals op[static_cast<size_t>(CommOp::count)];
  };
  std::vector<GroupTotals> comm_;
  // The current step's reduction window.
  bool in_reduction_ = false;
  double reduce_first_issue_ = -1, reduce_last_done_ = -1, reduce_span_ = 0;
  // Device timing (null on the CPU): scopes marked since the last flush.
  std::unique_ptr<DeviceTimer> timer_;
  struct Marked {
    Kind kind;
    int index, micro;
    size_t mark0, mark1;
  };
  std::vector<Marked> marked_;
  size_t next_mark_ = 0;
  double device_origin_ = 0;  // host seconds (since origin_) of mark 0
};

// Bytes the heap holds now (glibc mallinfo2: arena plus mmap'd blocks).
double heap_bytes();
// Peak resident set of this process (VmHWM), bytes; 0 if unknown.
double peak_rss_bytes();
// The best GFLOP/s of an n x n x n sgemm through cpu::gemm with the current
// thread count, over `reps` runs: the MFU denominator.
double measure_sgemm_gflops(int n = 1024, int reps = 4);
// FLOP/s of n x n x n products in `dt` (f32 or bf16) on the runtime's device
// through ops::MatmulPlan (cuBLASLt on a GPU), sustained: back to back for
// `settle` seconds, then the rate over at least `seconds` more. The inputs
// hold values in [-1, 1), not zeros (a tensor core's power, and so its clock
// under the power limit, depends on the bits it multiplies).
double measure_gemm_rate(const ops::Runtime& rt, DType dt, int64_t n, double settle, double seconds);
// B/s of copying `bytes` from one buffer on the runtime's device to another,
// counting each byte read and written (what the cost model's memory-bound
// passes count): the best of 10 batches of 8.
double measure_copy_bandwidth(const ops::Runtime& rt, double bytes);

// The progress line's breakdown for `dtrain run` with log.profile:
// " | fwd 41% bwd 47% comm 6% opt 3% data 1%", shares of `seconds` (the
// interval's step time); comm = time blocked in any communicator
// (comm_seconds, which counts tp waits inside the layers as well).
std::string breakdown_line(const Profiler& p, double seconds, double comm_seconds);

// "blocks.3" -> "blocks", "stages.1.blocks.0" -> "stages.blocks".
std::string layer_kind(const std::string& name);

}  // namespace dtrain
