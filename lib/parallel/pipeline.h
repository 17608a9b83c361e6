// Pipeline parallelism's plan: which top-level layers each stage holds, and
// the order in which a stage runs the forward and backward passes of a step's
// micro-batches (GPipe: all forwards, then all backwards; 1F1B: after a
// warm-up of (stages - stage - 1) forwards, one forward and one backward
// alternate, so at most (stages - stage) micro-batches are in flight;
// interleaved 1F1B (Megatron-LM, Narayanan et al. 2021): each stage holds v
// model chunks, chunk c being virtual stage c * stages + stage, so a
// micro-batch visits every stage v times and the bubble shrinks by v).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain {

// Cuts `costs` (one per top-level layer, e.g. forward + backward FLOPs) into
// `stages` contiguous non-empty runs minimising the most expensive one.
// Returns stages + 1 boundaries: stage s holds layers [b[s], b[s+1]).
// Throws ConfigError when there are fewer layers than stages.
std::vector<int64_t> partition_layers(const std::vector<double>& costs, int stages);

struct PipeOp {
  enum class Kind { forward, backward } kind;
  int micro;      // micro-batch index in [0, micro_batches)
  int chunk = 0;  // model chunk on this stage (interleaved; else 0): virtual stage chunk * stages + stage
  // Interleaved steady state: this forward and the backward after it are one
  // block, whose transfers go together (see pipeline_transfers).
  bool joined = false;
};

// The operations stage `stage` of `stages` runs for one step of
// `micro_batches` micro-batches under `schedule` ("gpipe", "1f1b", or
// "interleaved" with `chunks` >= 2 model chunks per stage; micro_batches must
// then be a multiple of stages). Within a chunk, forwards and backwards each
// run in micro-batch order, so neighbours' sends and receives pair up.
std::vector<PipeOp> pipeline_schedule(const std::string& schedule, int stage, int stages,
                                      int micro_batches, int chunks = 1);

// The tag of a message between pipeline neighbours: the activations (or the
// gradient) of micro-batch `micro` from the sender's virtual stage `vstage`
// of `vstages`. Below MPI's guaranteed 32767; NCCL ignores tags and matches
// by order, which pipeline_transfers keeps the same on both ends.
int pipeline_tag(int micro, int vstage, int vstages, bool gradient);

// One point-to-point transfer of a stage's step: the input of schedule op
// `op` received (a forward's activations from the previous virtual stage, a
// backward's gradient from the next) or its output sent.
struct PipeTransfer {
  enum class Kind : uint8_t { send, recv } kind;
  int op;    // index into the stage's schedule
  int peer;  // the other stage
  int tag;   // pipeline_tag
};

// Transfers issued as one (Communicator::batch_p2p: one ncclGroupStart/End),
// before schedule op `before` runs (ops.size(): after the last).
struct PipeBatch {
  int before = 0;
  std::vector<PipeTransfer> transfers;  // the sends, then the receives
};

// The transfers of stage `stage` for one step of its schedule `ops`, in the
// order it issues them. Blocks are single ops, or a forward joined to the
// backward after it; between two blocks the sends of the first and the
// receives of the second go as one batch: Megatron-LM's
// send_forward_recv_backward and send_backward_recv_forward in 1F1B's steady
// state, send_forward_backward_recv_forward_backward in the interleaved one.
// Issued one at a time on a library whose sends wait for the peer's receive
// and whose operations run one after another (NCCL on one stream, past its
// buffer sizes), 1F1B's steady state deadlocks: both neighbours send first.
// Batched, every schedule completes under those semantics
// (tests/parallel/pipeline_test.cpp runs each against them).
std::vector<PipeBatch> pipeline_transfers(const std::vector<PipeOp>& ops, int stage, int stages, int chunks = 1);

// The most micro-batches whose activations a stage holds at once under that
// schedule (how many copies of its activation buffers it needs); with a
// chunk >= 0, counting only that chunk's operations.
int in_flight(const std::vector<PipeOp>& ops, int chunk = -1);

// The schedule's ideal bubble relative to the compute time, with equal
// stages and forward/backward times: (stages - 1) / micro_batches, divided by
// `chunks` under "interleaved" (Narayanan et al. 2021, eq. 1 and 2).
double ideal_bubble(const std::string& schedule, int stages, int micro_batches, int chunks = 1);

}  // namespace dtrain
