// The mesh: the layout arithmetic, the membership of every group for every
// layout of this world size, and the known answers on each group.
#include <doctest/doctest.h>

#include <functional>

#include "collectives.h"
#include "dist/mesh.h"
#include "dist_test.h"

namespace dtrain::test {

TEST_CASE("mesh layout: tp fastest, then dp, then pp") {
  MeshLayout l{2, 3, 4};
  CHECK(l.rank_of({0, 0, 0}) == 0);
  CHECK(l.rank_of({0, 1, 0}) == 1);
  CHECK(l.rank_of({1, 0, 0}) == 3);
  CHECK(l.rank_of({0, 0, 1}) == 6);
  for (int r = 0; r < l.world_size(); ++r) CHECK(l.rank_of(l.coord_of(r)) == r);
  CHECK_NOTHROW(l.validate(24));
  CHECK_THROWS_WITH_AS(l.validate(8),
                       doctest::Contains("parallel.dp x parallel.tp x parallel.pp = 2 x 3 x 4 = 24 "
                                         "does not match the world size 8"),
                       ConfigError);
  CHECK_THROWS_WITH_AS((MeshLayout{0, 1, 1}.validate(1)), doctest::Contains("parallel.dp = 0"),
                       ConfigError);
}

TEST_CASE("mesh: a layout that does not match the world size is a config error") {
  CHECK_THROWS_WITH_AS(Mesh(MeshLayout{world_size() + 1, 1, 1}, test_options()),
                       doctest::Contains("parallel.dp"), ConfigError);
}

TEST_CASE("mesh: every layout of this world size") {
  const int n = world_size(), me = world_rank();
  for (MeshLayout l : layouts_of(n)) {
    CAPTURE(l.str());
    Mesh mesh(l, test_options());
    const MeshCoord c = mesh.coord();
    CHECK(c == l.coord_of(me));
    CHECK(l.rank_of(c) == me);
    CHECK(mesh.describe().find(l.str()) != std::string::npos);
    struct Axis {
      Communicator& g;
      const char* name;
      int degree, mine;
      std::function<MeshCoord(int)> member;
    };
    std::vector<Axis> axes = {
        {mesh.world(), "world", n, me, [&](int m) { return l.coord_of(m); }},
        {mesh.dp_group(), "dp", l.dp, c.dp, [&](int m) { return MeshCoord{m, c.tp, c.pp}; }},
        {mesh.tp_group(), "tp", l.tp, c.tp, [&](int m) { return MeshCoord{c.dp, m, c.pp}; }},
        {mesh.pp_group(), "pp", l.pp, c.pp, [&](int m) { return MeshCoord{c.dp, c.tp, m}; }},
    };
    const bool holds_embedding = l.pp > 1 && (c.pp == 0 || c.pp == l.pp - 1);
    axes.push_back({mesh.embed_group(), "embed", holds_embedding ? 2 : 1,
                    holds_embedding ? (c.pp == 0 ? 0 : 1) : 0, [&](int m) {
                      return holds_embedding ? MeshCoord{c.dp, c.tp, m == 0 ? 0 : l.pp - 1} : c;
                    }});
    for (Axis& a : axes) {
      CAPTURE(a.name);
      CHECK(a.g.name() == a.name);
      CHECK(a.g.size() == a.degree);
      CHECK(a.g.rank() == a.mine);
      for (int m = 0; m < a.g.size(); ++m) CHECK(a.g.world_rank(m) == l.rank_of(a.member(m)));
      // The group holds exactly those ranks: the sum of their world ranks.
      Tensor t = Tensor::empty({1}, DType::i32);
      t.data<int32_t>()[0] = me;
      all_reduce(a.g, t);
      int expected = 0;
      for (int m = 0; m < a.degree; ++m) expected += l.rank_of(a.member(m));
      CHECK(t.data<int32_t>()[0] == expected);
      check_collectives(a.g);
    }
    CHECK(mesh.first_stage() == (c.pp == 0));
    CHECK(mesh.last_stage() == (c.pp == l.pp - 1));
    CHECK(mesh.prev_stage() == c.pp - 1);
    CHECK(mesh.next_stage() == (c.pp == l.pp - 1 ? -1 : c.pp + 1));
  }
}

}  // namespace dtrain::test

namespace dtrain::test {

TEST_CASE("mesh: the trace names the group and its collective number") {
  const int n = world_size();
  Mesh mesh(MeshLayout{1, n, 1}, test_options());
  std::vector<std::string> lines;
  mesh.set_trace([&](const std::string& l) { lines.push_back(l); });
  Tensor t = Tensor::zeros({4096}, DType::f32);
  all_reduce(mesh.tp_group(), t);
  all_reduce(mesh.tp_group(), t, ReduceOp::max);
  if (n == 1) {
    CHECK(lines.empty());  // one-member groups do no communication to trace
  } else {
    REQUIRE(lines.size() == 2);
    CHECK(lines[1] == fmt::format("rank {} tp#2 all_reduce 4096 fp32 max", world_rank()));
  }
  CHECK(mesh.describe() ==
        fmt::format("mesh dp=1 tp={} pp=1 over {} ranks (tp fastest, then dp, then pp); rank "
                    "{} = dp 0, tp {}, pp 0",
                    n, n, world_rank(), world_rank()));
}

}  // namespace dtrain::test
