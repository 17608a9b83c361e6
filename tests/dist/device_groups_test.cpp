// The host side of device runs: the choice between NCCL and the MPI-staged
// path, the split colors NCCL gets (the MPI mesh's), and the one-member
// device group's host behaviour.
#include <doctest/doctest.h>

#include <map>

#include "dist/device_groups.h"
#include "dist_test.h"

namespace dtrain::test {

TEST_CASE("device_comm: auto picks mpi when ranks share a GPU, else nccl") {
  auto c = choose_device_comm("auto", {"node-a 0000:3b:00.0", "node-a 0000:3b:00.0"});
  CHECK(c.backend == "mpi");
  CHECK(c.reason == "ranks 0 and 1 share the GPU 0000:3b:00.0 of node-a (NCCL refuses that)");
  // The same bus id on two nodes is two GPUs.
  c = choose_device_comm("auto", {"node-a 0000:3b:00.0", "node-b 0000:3b:00.0"});
  CHECK(c.backend == "nccl");
  CHECK(c.reason == "every rank has a GPU of its own");
  c = choose_device_comm("auto", {"a 1", "a 2", "a 3", "a 2"});
  CHECK(c.backend == "mpi");
  CHECK(c.reason.find("ranks 1 and 3 share the GPU 2 of a") == 0);
  CHECK(choose_device_comm("auto", {"a 1"}).backend == "mpi");  // one rank: nothing to exchange
  CHECK(choose_device_comm("mpi", {"a 1", "a 2"}).backend == "mpi");
  CHECK(choose_device_comm("nccl", {"a 1", "a 2"}).backend == "nccl");
}

TEST_CASE("device_comm: nccl on a shared GPU and an unknown value are refused in one line") {
  CHECK_THROWS_WITH_AS(choose_device_comm("nccl", {"h 0000:01:00.0", "h 0000:01:00.0"}),
                       "parallel.device_comm = nccl, but ranks 0 and 1 share the GPU 0000:01:00.0 "
                       "of h: NCCL refuses two ranks on one GPU; use auto or mpi (host-staged)",
                       ConfigError);
  CHECK_THROWS_WITH_AS(choose_device_comm("gloo", {"h 1"}), doctest::Contains("expected auto, nccl or mpi"),
                       ConfigError);
}

TEST_CASE("nccl splits: each color and key make exactly the group of the layout") {
  for (int n : {1, 2, 4, 6, 8}) {
    for (const MeshLayout& layout : layouts_of(n)) {
      CAPTURE(layout.str());
      // Members of each (group, color), in key order, from every rank's splits.
      std::map<std::pair<std::string, int>, std::map<int, int>> groups;
      for (int r = 0; r < n; ++r) {
        const MeshCoord c = layout.coord_of(r);
        const auto splits = mesh_splits(layout, c);
        REQUIRE(splits.size() == 5);
        CHECK(splits[0].name == "world");
        CHECK(splits[4].name == "embed");
        for (const MeshSplit& s : splits) {
          if (nccl_color(s) < 0) {
            CHECK((s.size == 1 || s.color < 0));
            continue;
          }
          auto& members = groups[{s.name, s.color}];
          CHECK(members.count(s.key) == 0);
          members[s.key] = r;
        }
      }
      for (auto& [id, members] : groups) {
        const std::string& name = id.first;
        std::vector<int> ranks;
        for (auto& [key, r] : members) ranks.push_back(r);
        const MeshCoord c0 = layout.coord_of(ranks[0]);
        const int expected = name == "world" ? n : name == "dp" ? layout.dp : name == "tp" ? layout.tp
                                                : name == "pp" ? layout.pp : 2;
        CHECK(static_cast<int>(ranks.size()) == expected);
        for (size_t m = 0; m < ranks.size(); ++m) {
          const MeshCoord c = layout.coord_of(ranks[m]);
          if (name == "world") CHECK(ranks[m] == static_cast<int>(m));
          if (name == "dp") CHECK((c.dp == static_cast<int>(m) && c.tp == c0.tp && c.pp == c0.pp));
          if (name == "tp") CHECK((c.tp == static_cast<int>(m) && c.dp == c0.dp && c.pp == c0.pp));
          if (name == "pp") CHECK((c.pp == static_cast<int>(m) && c.dp == c0.dp && c.tp == c0.tp));
          if (name == "embed") CHECK((c.pp == (m == 0 ? 0 : layout.pp - 1) && c.dp == c0.dp && c.tp == c0.tp));
        }
      }
    }
  }
}

TEST_CASE("nccl splits: the colors are the MPI mesh's, so each NCCL group equals its MPI twin") {
  for (const MeshLayout& layout : layouts_of(world_size())) {
    Mesh mesh(layout, test_options());
    const auto splits = mesh_splits(layout, mesh.coord());
    Communicator* groups[] = {&mesh.world(), &mesh.dp_group(), &mesh.tp_group(), &mesh.pp_group(),
                              &mesh.embed_group()};
    for (size_t i = 0; i < splits.size(); ++i) {
      CAPTURE(splits[i].name);
      CHECK(groups[i]->name() == splits[i].name);
      CHECK(groups[i]->size() == (splits[i].color < 0 ? 1 : splits[i].size));
      // Members are numbered in key order: the key itself, except embed's (stages 0 and pp-1).
      if (splits[i].color >= 0)
        CHECK(groups[i]->rank() == (splits[i].name == "embed" ? (splits[i].key == 0 ? 0 : 1) : splits[i].key));
    }
  }
}

TEST_CASE("device self group: host tensors behave as the one-member group") {
  auto g = make_device_self_communicator("tp", world_rank());
  CHECK(g->size() == 1);
  CHECK(g->world_rank(0) == world_rank());
  Tensor in = Tensor::zeros({4}, DType::f32), out = Tensor::zeros({4}, DType::f32);
  in.data<float>()[2] = 5;
  g->all_gather(in, out)->wait();
  CHECK(out.data<float>()[2] == 5);
  g->all_reduce(in, ReduceOp::sum)->wait();
  CHECK(in.data<float>()[2] == 5);
  CHECK_THROWS(g->send(in, 1, 0));
}

}  // namespace dtrain::test
