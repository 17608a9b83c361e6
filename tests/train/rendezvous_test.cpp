// The pipeline's transfers under NCCL's semantics, on the CPU: NCCL runs a
// rank's operations one after another on one stream, and past its buffer
// sizes a send does not complete until the peer has posted the receive. A
// step loop that issues sends and receives one at a time deadlocks there in
// 1F1B's steady state (both neighbours send first), which MPI's non-blocking
// Isend hides. RendezvousCommunicator gives an MPI group those semantics
// (MPI_Issend, each operation finished before the next is issued, a deadline
// instead of a hang); the trainer, whose transfers go in Megatron's batches
// (parallel/pipeline.h: pipeline_transfers), must train through it like one
// process on every schedule. Evaluation's transfers go one at a time
// (forward only, in one direction: Trainer::evaluate_now says why that cannot
// deadlock) and must complete under the same semantics. Runs in test_train
// under mpirun -np 8.
#include <doctest/doctest.h>

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "../data/data_files.h"
#include "config/config.h"
#include "core/error.h"
#include "dist/mesh_groups.h"
#include "dist/mpi_communicator.h"
#include "train/trainer.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

class DoneWork : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

// `inner`'s collectives as they are; its point-to-point transfers with
// rendezvous semantics: every send, receive or batch is complete when the
// call returns (a rank's transfers one after another, as on NCCL's stream),
// a send only once the peer has posted its receive (MPI_Issend), a batch only
// once all of its transfers are (NCCL's ncclGroupStart/End). A call that does
// not complete within `deadline_s` throws, or with `abort` prints why and
// ends the job (MPI_Abort): the deadlock made visible. (After a deadlock in
// the step loop neither side can post the other's transfer: the job could
// only hang in the next collective.)
class RendezvousCommunicator : public Communicator {
 public:
  RendezvousCommunicator(MpiCommunicator& inner, double deadline_s, bool abort)
      : inner_(inner), deadline_s_(deadline_s), abort_(abort) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  int world_rank(int r) const override { return inner_.world_rank(r); }
  WorkHandle all_reduce(Tensor t, ReduceOp op) override { return inner_.all_reduce(std::move(t), op); }
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op, std::vector<int64_t> counts = {}) override {
    return inner_.reduce_scatter(std::move(in), std::move(out), op, std::move(counts));
  }
  WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts = {}) override {
    return inner_.all_gather(std::move(in), std::move(out), std::move(counts));
  }
  WorkHandle broadcast(Tensor t, int root) override { return inner_.broadcast(std::move(t), root); }
  WorkHandle barrier() override { return inner_.barrier(); }
  void set_timeout(double seconds) override { inner_.set_timeout(seconds); }
  const CommStats& stats() const override { return inner_.stats(); }

  WorkHandle send(Tensor t, int peer, int tag) override { return batch_p2p({{P2POp::Kind::send, t, peer, tag}}); }
  WorkHandle recv(Tensor t, int peer, int tag) override { return batch_p2p({{P2POp::Kind::recv, t, peer, tag}}); }
  WorkHandle batch_p2p(std::vector<P2POp> ops) override {
    std::vector<MPI_Request> reqs(ops.size());
    std::string what;
    for (size_t i = 0; i < ops.size(); ++i) {
      const P2POp& o = ops[i];
      const int bytes = static_cast<int>(o.tensor.bytes());
      if (o.kind == P2POp::Kind::send)
        MPI_Issend(o.tensor.raw(), bytes, MPI_BYTE, o.peer, o.tag, inner_.handle(), &reqs[i]);
      else
        MPI_Irecv(o.tensor.raw(), bytes, MPI_BYTE, o.peer, o.tag, inner_.handle(), &reqs[i]);
      what += fmt::format("{}{} member {} tag {}", what.empty() ? "" : ", ",
                          o.kind == P2POp::Kind::send ? "send to" : "recv from", o.peer, o.tag);
    }
    ++batches_;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(deadline_s_);
    for (;;) {
      int done = 0;
      MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
      if (done) return std::make_unique<DoneWork>();
      if (std::chrono::steady_clock::now() > until) {
        stuck_.insert(stuck_.end(), reqs.begin(), reqs.end());
        const std::string e = fmt::format("group {} member {}: [{}] did not complete within {} s (a rendezvous "
                                          "deadlock: the peer never posted its side)",
                                          name(), rank(), what, deadline_s_);
        if (abort_) {
          std::fprintf(stderr, "FAILED: %s\n", e.c_str());
          MPI_Abort(MPI_COMM_WORLD, 3);
        }
        throw RuntimeError(e);
      }
    }
  }

  // Completes the transfers of calls that threw (once their peers post them).
  void drain() {
    if (!stuck_.empty()) MPI_Waitall(static_cast<int>(stuck_.size()), stuck_.data(), MPI_STATUSES_IGNORE);
    stuck_.clear();
  }
  int64_t batches() const { return batches_; }

 private:
  MpiCommunicator& inner_;
  double deadline_s_;
  bool abort_;
  std::vector<MPI_Request> stuck_;
  int64_t batches_ = 0;
};

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// The ranks below n in a communicator of their own (MPI_COMM_NULL elsewhere).
MPI_Comm first_ranks(int n) {
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < n ? 0 : MPI_UNDEFINED, world_rank(), &sub);
  return sub;
}

std::string gpt_toml(const std::string& dir) {
  return fmt::format(R"(
[model]
type = "gpt"
vocab_size = 64
context_length = 16
n_layer = 6
n_head = 2
n_embd = 16
dropout = 0.1
[data]
train = "{0}/tok_train.bin"
val = "{0}/tok_val.bin"
[train]
steps = 3
seed = 3
micro_batch = 2
global_batch = 16
grad_accum = 8
eval_every = 0
eval_batches = 3
threads = 1
[optim]
name = "adamw"
lr = 3e-3
warmup_steps = 1
[log]
out_dir = "{0}/out"
every = 1000
)", dir);
}

// The steps' losses, then the evaluation loss after them.
std::vector<double> losses(const Config& cfg, const Groups& g) {
  Trainer t(cfg, g, [](const std::string&) {});
  std::vector<double> out;
  for (int64_t s = 0; s < cfg.train.steps; ++s) out.push_back(t.train_step(s).loss);
  out.push_back(t.evaluate().loss);
  return out;
}

}  // namespace

TEST_CASE("rendezvous communicator: neighbours that both send first never complete, a batch of both does") {
  if (world_size() < 2) return;
  MPI_Comm sub = first_ranks(2);
  if (sub != MPI_COMM_NULL) {
    MpiCommunicator inner(sub, "pp");
    RendezvousCommunicator c(inner, 1.0, false);
    const int other = 1 - c.rank();
    Tensor out = Tensor::zeros(Shape{64}, DType::f32), in = Tensor::zeros(Shape{64}, DType::f32);
    for (int64_t i = 0; i < 64; ++i) out.data<float>()[i] = static_cast<float>(c.rank() + 1);
    // What the step loop used to issue in 1F1B's steady state: each stage
    // sends to the other before receiving from it.
    CHECK_THROWS_WITH_AS(c.send(out, other, 5), doctest::Contains("rendezvous deadlock"), RuntimeError);
    // Neither posts its receive before both have given up: a rank descheduled
    // past the other's deadline would otherwise find its send received.
    MPI_Barrier(sub);
    MPI_Recv(in.raw(), static_cast<int>(in.bytes()), MPI_BYTE, other, 5, inner.handle(), MPI_STATUS_IGNORE);
    c.drain();
    CHECK(in.data<float>()[63] == static_cast<float>(other + 1));
    // The same two transfers as one batch (Megatron's send_forward_recv_backward).
    in = Tensor::zeros(Shape{64}, DType::f32);
    c.batch_p2p({{P2POp::Kind::send, out, other, 6}, {P2POp::Kind::recv, in, other, 6}})->wait();
    CHECK(in.data<float>()[0] == static_cast<float>(other + 1));
    MPI_Comm_free(&sub);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE("pipeline under rendezvous sends: 1F1B, GPipe and interleaved on pp 2 and 4 train and evaluate like one process") {
  const std::string dir = "/tmp/dtrain_rendezvous_" + std::to_string(::getppid());
  if (world_rank() == 0) {
    std::filesystem::create_directories(dir);
    std::vector<uint16_t> tokens(4000);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>((i * 5 + i / 7 + (i * i) % 13) % 64);
    write_bytes(dir + "/tok_train.bin", token_file(tokens));
    write_bytes(dir + "/tok_val.bin", token_file(std::vector<uint16_t>(tokens.begin(), tokens.begin() + 400)));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string toml = gpt_toml(dir);
  SelfGroups self;
  const std::vector<double> ref = losses(parse_config(toml, "rendezvous.toml"), self.groups());
  // Each case's mesh is freed before the next is made, as a process that
  // builds several meshes would: before arrival boards closed (every member
  // takes in the others' last notices before freeing its duplicate), the
  // pp 4 case's board read a pp 2 case's unreceived notice under a reused
  // MPI context id and reported a mismatch between members that agreed.
  std::vector<std::unique_ptr<Mesh>> meshes;
  std::vector<MPI_Comm> subs;
  struct Case {
    int pp;
    std::string schedule;
    int chunks;
    int dp = 1, zero = 0;  // ZeRO-3: evaluation's parameter gathers over dp between the stages' transfers
  };
  for (const Case& k : {Case{2, "1f1b", 1}, Case{2, "gpipe", 1}, Case{2, "interleaved", 2}, Case{4, "1f1b", 1},
                        Case{4, "interleaved", 2}, Case{2, "1f1b", 1, 2, 3}}) {
    if (world_size() < k.pp * k.dp) continue;
    MPI_Comm sub = first_ranks(k.pp * k.dp);
    if (sub != MPI_COMM_NULL) {
      std::vector<std::string> sets{fmt::format("parallel.pp={}", k.pp), "parallel.schedule=" + k.schedule};
      if (k.chunks > 1) sets.push_back(fmt::format("parallel.virtual_stages={}", k.chunks));
      if (k.dp > 1) {
        sets.push_back(fmt::format("parallel.dp={}", k.dp));
        sets.push_back(fmt::format("train.grad_accum={}", 8 / k.dp));
        sets.push_back(fmt::format("parallel.zero={}", k.zero));
      }
      const Config cfg = parse_config(toml, "rendezvous.toml", sets, k.pp * k.dp);
      subs.push_back(sub);
      Mesh& mesh = *meshes.emplace_back(std::make_unique<Mesh>(MeshLayout{k.dp, 1, k.pp}, MpiCommOptions{}, sub));
      Groups g = mesh_groups(mesh);
      // Long enough for a loaded machine; a deadlock fails here instead of hanging.
      RendezvousCommunicator pp(dynamic_cast<MpiCommunicator&>(mesh.pp_group()), 120.0, true);
      g.pp = &pp;
      const std::vector<double> got = losses(cfg, g);
      CAPTURE(k.pp);
      CAPTURE(k.dp);
      CAPTURE(k.schedule);
      CAPTURE(world_rank());
      CHECK(pp.batches() > 0);
      REQUIRE(got.size() == ref.size());
      for (size_t s = 0; s < ref.size(); ++s) CHECK(got[s] == doctest::Approx(ref[s]).epsilon(1e-5));
    }
    meshes.clear();
    MPI_Barrier(MPI_COMM_WORLD);
  }
  for (MPI_Comm& c : subs) MPI_Comm_free(&c);
}
