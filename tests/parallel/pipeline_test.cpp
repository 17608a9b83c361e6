// The parallel plan: rank arithmetic, balanced stage partitions and the
// pipeline schedules' order and memory.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "core/error.h"
#include "parallel/layout.h"
#include "parallel/pipeline.h"

using namespace dtrain;

TEST_CASE("layout: tensor-parallel ranks are adjacent, then data, then pipeline") {
  const Layout l{.dp = 2, .tp = 3, .pp = 2};
  CHECK(l.world() == 12);
  for (int r = 0; r < l.world(); ++r) {
    const Coord c = coord_of(l, r);
    CHECK(world_rank_of(l, c) == r);
    CHECK(c.tp == r % 3);
  }
  CHECK(coord_of(l, 4).dp == 1);
  CHECK(coord_of(l, 4).pp == 0);
  CHECK(coord_of(l, 6).pp == 1);
  CHECK(coord_of(l, 6).dp == 0);
}

TEST_CASE("partition: contiguous stages minimising the largest") {
  CHECK(partition_layers({1, 1, 1, 1}, 2) == std::vector<int64_t>{0, 2, 4});
  CHECK(partition_layers({1, 1, 1, 1}, 4) == std::vector<int64_t>{0, 1, 2, 3, 4});
  // A heavy last layer (the output head) ends up with few others.
  CHECK(partition_layers({0, 2, 2, 2, 2, 0.1, 7}, 2) == std::vector<int64_t>{0, 5, 7});
  CHECK(partition_layers({0, 2, 2, 2, 2, 0.1, 5}, 3) == std::vector<int64_t>{0, 3, 6, 7});
  CHECK(partition_layers({5}, 1) == std::vector<int64_t>{0, 1});
  CHECK_THROWS_WITH_AS(partition_layers({1, 1}, 3), doctest::Contains("parallel.pp (3) exceeds"), ConfigError);
}

TEST_CASE("schedules: every micro-batch forward then backward once, 1F1B bounds what is in flight") {
  for (const char* name : {"gpipe", "1f1b"})
    for (int stages : {1, 2, 4})
      for (int m : {1, 2, 3, 8})
        for (int s = 0; s < stages; ++s) {
          CAPTURE(name);
          CAPTURE(stages);
          CAPTURE(m);
          CAPTURE(s);
          auto ops = pipeline_schedule(name, s, stages, m);
          REQUIRE(ops.size() == size_t(2 * m));
          std::map<int, int> state;  // 0 none, 1 forward done, 2 backward done
          int next_f = 0, next_b = 0;
          for (const PipeOp& op : ops) {
            if (op.kind == PipeOp::Kind::forward) {
              CHECK(op.micro == next_f++);  // in order: the neighbours' order must match
              CHECK(state[op.micro] == 0);
              state[op.micro] = 1;
            } else {
              CHECK(op.micro == next_b++);
              CHECK(state[op.micro] == 1);
              state[op.micro] = 2;
            }
          }
          if (std::string(name) == "gpipe") CHECK(in_flight(ops) == m);
          else CHECK(in_flight(ops) == std::min(stages - s, m));
        }
  using K = PipeOp::Kind;
  auto ops = pipeline_schedule("1f1b", 0, 2, 3);
  const std::vector<std::pair<K, int>> want{{K::forward, 0}, {K::forward, 1}, {K::backward, 0},
                                            {K::forward, 2}, {K::backward, 1}, {K::backward, 2}};
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK(ops[i].kind == want[i].first);
    CHECK(ops[i].micro == want[i].second);
  }
}

namespace {

// The whole pipeline run as ranks that execute their operations in order,
// each as soon as what it receives has been sent: a forward of virtual stage
// s needs the forward of s - 1 (activations), a backward of s the backward of
// s + 1 (gradients). Sends do not block, but a copy's buffers are reused only
// once what was sent from them has been received (the trainer waits for a
// slot's sends before overwriting it). Forwards cost 1 and backwards 2 units
// split evenly over a stage's chunks. Returns the step's makespan, or -1 on
// deadlock (no rank can move).
double simulate_ops(const std::vector<std::vector<PipeOp>>& ops, int micro, int chunks) {
  using K = PipeOp::Kind;
  const int stages = static_cast<int>(ops.size()), vstages = stages * chunks;
  std::vector<std::vector<int>> slots(stages);  // per stage and chunk: copies
  for (int r = 0; r < stages; ++r)
    for (int c = 0; c < chunks; ++c) slots[r].push_back(in_flight(ops[r], c));
  // done[kind][vstage][micro]: the time that op finished (-1: not yet);
  // started likewise (a receive is posted when its op starts).
  auto table = [&] { return std::vector(2, std::vector(vstages, std::vector<double>(micro, -1.0))); };
  auto done = table(), started = table();
  std::vector<size_t> next(stages, 0);
  std::vector<double> clock(stages, 0.0);
  const double tf = 1.0 / chunks, tb = 2.0 / chunks;
  for (;;) {
    bool moved = false, left = false;
    for (int r = 0; r < stages; ++r) {
      if (next[r] == ops[r].size()) continue;
      left = true;
      const PipeOp& op = ops[r][next[r]];
      const int s = op.chunk * stages + r, f = op.kind == K::forward ? 0 : 1;
      double ready = clock[r];
      // What this op receives.
      const int from = f == 0 ? s - 1 : s + 1;
      if (from >= 0 && from < vstages) {
        if (done[f][from][op.micro] < 0) continue;
        ready = std::max(ready, done[f][from][op.micro]);
      }
      if (f == 1 && done[0][s][op.micro] < 0) continue;  // never: checked per stage too
      // Reusing a copy: the previous user's sends have been received.
      const int prev = op.micro - slots[r][op.chunk];
      if (f == 0 && prev >= 0) {
        if (s + 1 < vstages && started[0][s + 1][prev] < 0) continue;
        if (s > 0 && started[1][s - 1][prev] < 0) continue;
      }
      started[f][s][op.micro] = ready;
      clock[r] = ready + (f == 0 ? tf : tb);
      done[f][s][op.micro] = clock[r];
      ++next[r];
      moved = true;
    }
    if (!left) break;
    if (!moved) return -1;
  }
  return *std::max_element(clock.begin(), clock.end());
}

double simulate(const std::string& schedule, int stages, int micro, int chunks) {
  std::vector<std::vector<PipeOp>> ops;
  for (int r = 0; r < stages; ++r) ops.push_back(pipeline_schedule(schedule, r, stages, micro, chunks));
  return simulate_ops(ops, micro, chunks);
}

}  // namespace

TEST_CASE("interleaved schedule: Megatron's order, each chunk's passes once and in order, no deadlock") {
  using K = PipeOp::Kind;
  for (int stages : {2, 3, 4})
    for (int chunks : {2, 3})
      for (int m : {stages, 2 * stages, 4 * stages})
        for (int s = 0; s < stages; ++s) {
          CAPTURE(stages);
          CAPTURE(chunks);
          CAPTURE(m);
          CAPTURE(s);
          auto ops = pipeline_schedule("interleaved", s, stages, m, chunks);
          REQUIRE(ops.size() == size_t(2 * m * chunks));
          std::map<std::pair<int, int>, int> state;  // (micro, chunk): 0 none, 1 forward done, 2 backward done
          std::vector<int> next_f(chunks, 0), next_b(chunks, 0);
          for (const PipeOp& op : ops) {
            REQUIRE(0 <= op.chunk);
            REQUIRE(op.chunk < chunks);
            int& st = state[{op.micro, op.chunk}];
            if (op.kind == K::forward) {
              CHECK(op.micro == next_f[op.chunk]++);
              CHECK(st == 0);
              st = 1;
            } else {
              CHECK(op.micro == next_b[op.chunk]++);
              CHECK(st == 1);
              st = 2;
            }
          }
          for (int c = 0; c < chunks; ++c) {
            CHECK(next_f[c] == m);
            CHECK(next_b[c] == m);
          }
          // Megatron's warm-up bounds what is in flight over all chunks.
          const int warmup = m == stages ? m * chunks : std::min(m * chunks, (stages - s - 1) * 2 + (chunks - 1) * stages);
          CHECK(in_flight(ops) == std::min(warmup + 1, m * chunks));
        }
  // Megatron's order for 2 stages, 2 chunks, 4 micro-batches (F/B micro chunk).
  auto str = [](const std::vector<PipeOp>& ops) {
    std::string s;
    for (const PipeOp& op : ops) s += fmt::format("{}{}{} ", op.kind == K::forward ? 'F' : 'B', op.micro, op.chunk);
    return s;
  };
  CHECK(str(pipeline_schedule("interleaved", 0, 2, 4, 2)) == "F00 F10 F01 F11 F20 B01 F30 B11 F21 B00 F31 B10 B21 B31 B20 B30 ");
  CHECK(str(pipeline_schedule("interleaved", 1, 2, 4, 2)) == "F00 F10 F01 B01 F11 B11 F20 B00 F30 B10 F21 B21 F31 B31 B20 B30 ");
  CHECK(in_flight(pipeline_schedule("interleaved", 0, 2, 4, 2), 0) == 4);
  CHECK(in_flight(pipeline_schedule("interleaved", 0, 2, 4, 2), 1) == 2);
}

TEST_CASE("pipeline simulation: every schedule completes, interleaving cuts the bubble by the chunks") {
  for (int stages : {2, 4})
    for (int m : {stages, 2 * stages, 4 * stages}) {
      CAPTURE(stages);
      CAPTURE(m);
      const double ideal = m * 3.0;  // forward 1 + backward 2 per micro-batch
      for (const char* name : {"gpipe", "1f1b"}) {
        CAPTURE(name);
        const double t = simulate(name, stages, m, 1);
        REQUIRE(t > 0);
        CHECK((t - ideal) / ideal == doctest::Approx(ideal_bubble(name, stages, m)));
      }
      for (int chunks : {2, 4}) {
        CAPTURE(chunks);
        const double t = simulate("interleaved", stages, m, chunks);
        REQUIRE(t > 0);  // no deadlock
        // The bubble (p - 1) / (v m) when m > p; with m = p every forward runs first (GPipe-like).
        if (m > stages) CHECK((t - ideal) / ideal == doctest::Approx(ideal_bubble("interleaved", stages, m, chunks)));
        CHECK((t - ideal) / ideal < ideal_bubble("1f1b", stages, m) + 1e-9);
      }
    }
  CHECK(ideal_bubble("interleaved", 4, 8, 2) == doctest::Approx(3.0 / 16));
  // The simulator sees a deadlock: stage 0 waits for micro-batch 0's gradient
  // while stage 1 waits for micro-batch 1's activations.
  using K = PipeOp::Kind;
  CHECK(simulate_ops({{{K::forward, 0}, {K::backward, 0}, {K::forward, 1}, {K::backward, 1}},
                      {{K::forward, 0}, {K::forward, 1}, {K::backward, 0}, {K::backward, 1}}}, 2, 1) == -1);
}

namespace {

using Units = std::vector<std::vector<std::vector<PipeTransfer>>>;  // per stage: what it issues, in order

// Rendezvous semantics, NCCL's past its buffer sizes: a stage posts its units
// (batches) one after another, each once the one before has completed; a
// transfer completes once its partner has been posted too, a unit with all its
// transfers. Partners pair by order, as NCCL pairs them: the k-th send from a
// to b with the k-th receive of b from a; they must carry the same tag (what
// MPI would match). Returns "" when every stage finishes, else what is wrong.
std::string rendezvous(const Units& units) {
  const int stages = static_cast<int>(units.size());
  using Key = std::tuple<int, int, int, bool>;  // sender, receiver, index in that direction, is the send
  std::map<Key, int> tag_of;
  std::vector<std::vector<std::vector<Key>>> keys(stages);
  std::map<std::tuple<int, int, bool>, int> count;
  for (int r = 0; r < stages; ++r)
    for (const auto& unit : units[r]) {
      keys[r].emplace_back();
      for (const PipeTransfer& t : unit) {
        const bool send = t.kind == PipeTransfer::Kind::send;
        const int from = send ? r : t.peer, to = send ? t.peer : r;
        const Key k{from, to, count[{from, to, send}]++, send};
        tag_of[k] = t.tag;
        keys[r].back().push_back(k);
      }
    }
  for (const auto& [k, tag] : tag_of) {
    auto [from, to, i, send] = k;
    auto partner = tag_of.find({from, to, i, !send});
    if (partner == tag_of.end())
      return fmt::format("{} {} of stage {} to stage {} has no partner", send ? "send" : "receive", i, from, to);
    if (partner->second != tag)
      return fmt::format("transfer {} from stage {} to stage {}: send tag {} met by receive tag {}", i, from, to,
                         send ? tag : partner->second, send ? partner->second : tag);
  }
  std::vector<size_t> next(stages, 0);
  std::set<Key> posted;
  auto post = [&](int r) {
    if (next[r] < keys[r].size()) posted.insert(keys[r][next[r]].begin(), keys[r][next[r]].end());
  };
  for (int r = 0; r < stages; ++r) post(r);
  for (bool moved = true; moved;) {
    moved = false;
    for (int r = 0; r < stages; ++r) {
      if (next[r] == keys[r].size()) continue;
      bool complete = true;
      for (const Key& k : keys[r][next[r]]) {
        auto [from, to, i, send] = k;
        complete = complete && posted.count({from, to, i, !send});
      }
      if (!complete) continue;
      ++next[r];
      post(r);
      moved = true;
    }
  }
  std::string stuck;
  for (int r = 0; r < stages; ++r)
    if (next[r] < keys[r].size()) stuck += fmt::format(" stage {} at unit {} of {};", r, next[r], keys[r].size());
  return stuck.empty() ? "" : "deadlock:" + stuck;
}

// What the step loop issued before batching: each op's receive, then its
// send, every transfer on its own.
std::vector<std::vector<PipeTransfer>> one_at_a_time(std::vector<PipeOp> ops, int stage, int stages, int chunks) {
  for (PipeOp& op : ops) op.joined = false;
  std::vector<std::vector<PipeTransfer>> units;
  for (const PipeBatch& b : pipeline_transfers(ops, stage, stages, chunks))
    for (const PipeTransfer& t : b.transfers) units.push_back({t});  // op i's send, then op i + 1's receive
  return units;
}

}  // namespace

TEST_CASE("pipeline transfers: batched, every schedule completes when a send waits for its receive, while one at a time 1F1B deadlocks") {
  struct Case {
    std::string schedule;
    int stages, micro, chunks;
  };
  std::vector<Case> cases;
  for (int stages = 2; stages <= 8; ++stages) {
    for (int m = 1; m <= 12; ++m)
      for (const char* s : {"gpipe", "1f1b"}) cases.push_back({s, stages, m, 1});
    for (int chunks = 2; chunks <= 4; ++chunks)
      for (int m = stages; m <= 4 * stages; m += stages) cases.push_back({"interleaved", stages, m, chunks});
  }
  int deadlocks = 0;
  for (const Case& c : cases) {
    CAPTURE(c.schedule);
    CAPTURE(c.stages);
    CAPTURE(c.micro);
    CAPTURE(c.chunks);
    Units batched, single;
    for (int s = 0; s < c.stages; ++s) {
      const auto ops = pipeline_schedule(c.schedule, s, c.stages, c.micro, c.chunks);
      const auto batches = pipeline_transfers(ops, s, c.stages, c.chunks);
      // Each op's receive comes before it runs and its send after, once;
      // batches in order, sends first.
      std::map<std::pair<int, bool>, int> seen;
      int last = -1;
      for (const PipeBatch& b : batches) {
        CHECK(b.before > last);
        last = b.before;
        bool receiving = false;
        for (const PipeTransfer& t : b.transfers) {
          const bool send = t.kind == PipeTransfer::Kind::send;
          CHECK((send ? t.op < b.before : t.op >= b.before));
          CHECK(!(send && receiving));
          receiving = receiving || !send;
          ++seen[{t.op, send}];
        }
      }
      for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
        const int v = ops[i].chunk * c.stages + s, last_v = c.stages * c.chunks - 1;
        const bool fwd = ops[i].kind == PipeOp::Kind::forward;
        CHECK(seen[{i, false}] == (fwd ? v > 0 : v < last_v));
        CHECK(seen[{i, true}] == (fwd ? v < last_v : v > 0));
      }
      std::vector<std::vector<PipeTransfer>> units;
      for (const PipeBatch& b : batches) units.push_back(b.transfers);
      batched.push_back(units);
      single.push_back(one_at_a_time(ops, s, c.stages, c.chunks));
    }
    CHECK(rendezvous(batched) == "");
    const std::string one = rendezvous(single);
    CHECK((one == "" || one.rfind("deadlock:", 0) == 0));  // the tags pair by order either way
    // GPipe's forwards all go before its backwards: one at a time completes.
    // 1F1B's steady state, one at a time, has neighbours sending to each other.
    if (c.schedule == "gpipe") CHECK(one == "");
    if (c.schedule == "1f1b" && c.micro >= 2) CHECK(one != "");
    deadlocks += one != "";
  }
  MESSAGE(fmt::format("{} of {} cases deadlock with transfers one at a time, none batched", deadlocks, cases.size()));

  // Megatron's pairs on 2 stages, 3 micro-batches: the first stage sends
  // forward and receives backward together, the last sends backward and
  // receives forward together.
  using K = PipeTransfer::Kind;
  auto str = [](const std::vector<PipeBatch>& batches) {
    std::string s;
    for (const PipeBatch& b : batches) {
      s += fmt::format("{}:", b.before);
      for (const PipeTransfer& t : b.transfers) s += fmt::format(" {}{}", t.kind == K::send ? 's' : 'r', t.op);
      s += "; ";
    }
    return s;
  };
  CHECK(str(pipeline_transfers(pipeline_schedule("1f1b", 0, 2, 3), 0, 2)) == "1: s0; 2: s1 r2; 4: s3 r4; 5: r5; ");
  CHECK(str(pipeline_transfers(pipeline_schedule("1f1b", 1, 2, 3), 1, 2)) == "0: r0; 2: s1 r2; 4: s3 r4; 6: s5; ");
  // Interleaved: the steady state's forward and backward are one block, four
  // transfers between blocks.
  const auto inter = pipeline_transfers(pipeline_schedule("interleaved", 1, 2, 4, 2), 1, 2, 2);
  CHECK(std::any_of(inter.begin(), inter.end(), [](const PipeBatch& b) { return b.transfers.size() == 4; }));
}
