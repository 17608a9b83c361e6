// The parallel plan: rank arithmetic, balanced stage partitions and the
// pipeline schedules' order and memory.
#include <doctest/doctest.h>

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
