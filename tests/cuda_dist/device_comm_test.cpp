// Device tensors through every communicator on a real GPU: the known-answer
// checks of tests/dist (collectives.h) run on device copies of their host
// tensors (DeviceView uploads before each operation and downloads after
// wait()), over the MPI-staged path on the world and on every mesh group of
// the device groups (ranks share the one GPU, so auto picks mpi), and NCCL at
// one rank: init, all_reduce, split, a hang that the watchdog aborts.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "../dist/collectives.h"
#include "../dist/dist_test.h"
#include "core/device.h"
#include "core/exec.h"
#include "dist/device_groups.h"
#include "dist/mpi_communicator.h"
#include "dist/nccl_communicator.h"

namespace dtrain::test {

namespace {

int my_device() {
  std::string why;
  return world_rank() % gpu::device_count(&why);
}

// Streams for the tests (one compute stream per case).
struct Stream {
  Stream() {
    gpu::set_device(my_device());
    s = gpu::stream_create();
  }
  ~Stream() { gpu::stream_destroy(s); }
  void* s = nullptr;
};

// Presents a communicator of device tensors as one of host tensors.
class DeviceView : public Communicator {
 public:
  DeviceView(Communicator& inner, void* stream, int device)
      : inner_(inner), stream_(stream), dev_(Device::cuda(device)) {
    inner_.set_compute_stream(stream);
  }
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  int world_rank(int r) const override { return inner_.world_rank(r); }

  WorkHandle all_reduce(Tensor t, ReduceOp op) override {
    Tensor d = up(t);
    return back(inner_.all_reduce(d, op), {{t, d}});
  }
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op, std::vector<int64_t> counts) override {
    Tensor din = up(in);
    const int64_t off = inside(out, in);
    Tensor dout = off >= 0 ? din.flat_range(off, out.numel()) : up(out);
    return back(inner_.reduce_scatter(din, dout, op, std::move(counts)), {{out, dout}});
  }
  WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) override {
    Tensor dout = up(out);
    const int64_t off = inside(in, out);
    Tensor din = off >= 0 ? dout.flat_range(off, in.numel()) : up(in);
    return back(inner_.all_gather(din, dout, std::move(counts)), {{out, dout}});
  }
  WorkHandle broadcast(Tensor t, int root) override {
    Tensor d = up(t);
    return back(inner_.broadcast(d, root), {{t, d}});
  }
  WorkHandle send(Tensor t, int peer, int tag) override {
    Tensor d = up(t);
    return back(inner_.send(d, peer, tag), {}, d);
  }
  WorkHandle recv(Tensor t, int peer, int tag) override {
    Tensor d = up(t);
    return back(inner_.recv(d, peer, tag), {{t, d}});
  }
  WorkHandle barrier() override { return inner_.barrier(); }
  void set_timeout(double s) override { inner_.set_timeout(s); }
  const CommStats& stats() const override { return inner_.stats(); }

 private:
  struct Pair {
    Tensor host, device;
  };
  class BackWork : public Work {
   public:
    BackWork(WorkHandle w, std::vector<Pair> back, void* stream, Tensor keep)
        : w_(std::move(w)), back_(std::move(back)), stream_(stream), keep_(std::move(keep)) {}
    void wait() override {
      w_->wait();
      gpu::stream_sync(stream_);  // the result is ordered on the compute stream
      for (Pair& p : back_) p.host.copy_from(p.device);
    }
    bool test() override { return w_->test(); }

   private:
    WorkHandle w_;
    std::vector<Pair> back_;
    void* stream_;
    Tensor keep_;
  };

  Tensor up(const Tensor& h) {
    Tensor d = Tensor::empty(h.shape(), h.dtype(), dev_);
    d.copy_from(h);  // complete on return
    return d;
  }
  // Element offset of `part` inside `whole` (host tensors), or -1.
  static int64_t inside(const Tensor& part, const Tensor& whole) {
    const char* p = static_cast<const char*>(part.raw());
    const char* w = static_cast<const char*>(whole.raw());
    if (p < w || p >= w + whole.bytes() || part.dtype() != whole.dtype()) return -1;
    return (p - w) / static_cast<int64_t>(dtype_size(whole.dtype()));
  }
  WorkHandle back(WorkHandle w, std::vector<Pair> pairs, Tensor keep = {}) {
    return std::make_unique<BackWork>(std::move(w), std::move(pairs), stream_, std::move(keep));
  }

  Communicator& inner_;
  void* stream_;
  Device dev_;
};

}  // namespace

TEST_CASE("cuda dist: the MPI-staged path gives every known answer on device tensors") {
  Stream stream;
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  DeviceView view(world, stream.s, my_device());
  check_collectives(view);
  REQUIRE(world.staging_pool() != nullptr);
  const int64_t made = world.staging_pool()->allocations();
  check_collectives(view);
  CHECK(world.staging_pool()->allocations() == made);  // reused: nothing allocated in a steady state
  CHECK(world.staging_pool()->busy() == 0);
}

TEST_CASE("cuda dist: bf16 all_reduce through host staging rounds once") {
  Stream stream;
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  world.set_compute_stream(stream.s);
  const int p = world.size();
  Tensor h = Tensor::empty({64}, DType::bf16);
  for (int i = 0; i < 64; ++i) h.data<bf16>()[i] = bf16(0.5f * (world.rank() + 1) + i);
  Tensor d = Tensor::empty({64}, DType::bf16, Device::cuda(my_device()));
  d.copy_from(h);
  world.all_reduce(d, ReduceOp::sum)->wait();
  gpu::stream_sync(stream.s);
  Tensor back = d.to_host();
  for (int i = 0; i < 64; ++i) {
    float expect = 0;
    for (int r = 0; r < p; ++r) expect += float(bf16(0.5f * (r + 1) + i));
    CHECK(float(back.data<bf16>()[i]) == doctest::Approx(float(bf16(expect))).epsilon(0.01));
  }
}

TEST_CASE("cuda dist: device groups of every layout (auto picks the MPI-staged path on one GPU)") {
  Stream stream;
  const Exec exec{Device::cuda(my_device()), stream.s, nullptr};
  for (const MeshLayout& layout : layouts_of(world_size())) {
    CAPTURE(layout.str());
    std::string line;
    DeviceGroupsOptions options;
    options.timeout_s = 60;
    options.log = [&](const std::string& l) { line = l; };
    DeviceGroups dg(layout, exec, options);
    std::string why;
    if (world_size() > 1 && gpu::device_count(&why) == 1) {
      CHECK(dg.backend() == "mpi");
      CHECK(line.find("device communication: mpi, host-staged (ranks 0 and 1 share the GPU") == 0);
    }
    const Groups& g = dg.groups();
    for (Communicator* c : {g.world, g.dp, g.tp, g.pp, g.embed}) {
      DeviceView view(*c, stream.s, my_device());
      check_collectives(view);
    }
    dg.check();
  }
}

TEST_CASE("cuda dist: NCCL at one rank: init, all_reduce, split, uneven gather, version") {
  if (world_size() != 1) return;  // NCCL refuses two ranks on one GPU
  CHECK_NOTHROW(nccl_check_version());
  MESSAGE(nccl_report());
  Stream stream;
  MpiCommunicator twin(MPI_COMM_WORLD, "world", test_options());
  NcclRuntime rt(my_device(), twin, 30);
  auto world = rt.world(twin);
  REQUIRE(world);
  CHECK(world->size() == 1);
  DeviceView view(*world, stream.s, my_device());
  check_all_reduce<float>(view, 1000);
  check_all_reduce<double>(view, 3);
  check_all_reduce<int32_t>(view, 17);
  for (bool in_place : {false, true}) {
    check_reduce_scatter(view, {}, 5, in_place);
    check_reduce_scatter(view, {7}, 0, in_place);
    check_all_gather(view, {}, 4, in_place);
    check_all_gather(view, {9}, 0, in_place);
  }
  check_broadcast(view);
  auto dp = rt.split("dp", 0, 0, twin);
  REQUIRE(dp);
  CHECK(dp->name() == "dp");
  DeviceView dpv(*dp, stream.s, my_device());
  check_all_reduce<float>(dpv, 4096);
  // A grouped send/recv to itself.
  Tensor a = Tensor::empty({16}, DType::f32), b = Tensor::zeros({16}, DType::f32);
  for (int i = 0; i < 16; ++i) a.data<float>()[i] = static_cast<float>(i * i);
  Tensor da = Tensor::empty({16}, DType::f32, Device::cuda(my_device())), db = Tensor::zeros({16}, DType::f32, Device::cuda(my_device()));
  da.copy_from(a);
  world->set_compute_stream(stream.s);
  world->batch_p2p({{P2POp::Kind::send, da, 0, 0}, {P2POp::Kind::recv, db, 0, 0}})->wait();
  gpu::stream_sync(stream.s);
  b.copy_from(db);
  for (int i = 0; i < 16; ++i) CHECK(b.data<float>()[i] == static_cast<float>(i * i));
  CHECK_NOTHROW(rt.check());
}

TEST_CASE("cuda dist: NCCL at one rank: a receive nobody sends is aborted after the timeout") {
  if (world_size() != 1) return;
  Stream stream;
  MpiCommunicator twin(MPI_COMM_WORLD, "world", test_options());
  NcclRuntime rt(my_device(), twin, 30);
  auto world = rt.world(twin);
  world->set_compute_stream(stream.s);
  world->set_timeout(1);
  Tensor d = Tensor::zeros({8}, DType::f32, Device::cuda(my_device()));
  WorkHandle w;
  try {
    w = world->recv(d, 0, 0);
  } catch (const RuntimeError& e) {
    MESSAGE("NCCL refused a lone receive from itself, so no hang to abort: ", std::string(e.what()));
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (!rt.failed() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(rt.failed());
  CHECK_THROWS_WITH_AS(rt.check(), doctest::Contains("recv of 8 fp32 from member 0"), RuntimeError);
  CHECK_THROWS_WITH_AS(w->wait(), doctest::Contains("did not complete within 1 s"), RuntimeError);
  CHECK_THROWS_WITH_AS(world->all_reduce(d, ReduceOp::sum), doctest::Contains("every NCCL communicator was aborted"),
                       RuntimeError);
}

}  // namespace dtrain::test
