// The parallel plan: rank arithmetic, balanced stage partitions and the
// pipeline schedules' order and memory.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>

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
