// The MPI-staged device path without a GPU: a copier that stages host
// tensors (counting its copies) runs every operation through the pinned-
// buffer pool and the copy back, so the staging logic is checked in CI; the
// real CUDA copier refuses clearly where there is no GPU.
#include <doctest/doctest.h>

#include "collectives.h"
#include "core/device.h"
#include "dist/mpi_communicator.h"
#include "dist/staging.h"
#include "dist_test.h"

namespace dtrain::test {

namespace {

// Stages every tensor that is not a staging buffer: "device" tensors are
// host tensors here. Counts the copies each way.
class FakeCopier : public StagingCopier {
 public:
  bool stages(const Tensor& t) const override { return t.defined(); }
  void to_host(const Tensor& host, const Tensor& device) override {
    ++to_host_n;
    Tensor h = host;
    h.copy_from(device);
  }
  void to_device(const Tensor& device, const Tensor& host) override {
    ++to_device_n;
    Tensor d = device;
    d.copy_from(host);
  }
  int to_host_n = 0, to_device_n = 0;
};

StagingPool::Allocate host_buffers() {
  return [](int64_t n, DType t) { return Tensor::empty(Shape{n}, t); };
}

}  // namespace

TEST_CASE("staging: every operation gives the known answer through host staging") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  auto copier = std::make_shared<FakeCopier>();
  world.set_staging(copier, host_buffers());
  check_collectives(world);
  if (world.size() > 1) {
    CHECK(copier->to_host_n > 0);
    CHECK(copier->to_device_n > 0);
  }
  REQUIRE(world.staging_pool() != nullptr);
  CHECK(world.staging_pool()->busy() == 0);
  // A second round reuses the buffers: nothing allocated in a steady state.
  const int64_t made = world.staging_pool()->allocations();
  check_collectives(world);
  CHECK(world.staging_pool()->allocations() == made);
  CHECK(world.staging_pool()->busy() == 0);
}

TEST_CASE("staging: bf16 all_reduce and the grouped point-to-point batch") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  auto copier = std::make_shared<FakeCopier>();
  world.set_staging(copier, host_buffers());
  const int p = world.size(), r = world.rank();
  Tensor t = Tensor::empty({5}, DType::bf16);
  for (int i = 0; i < 5; ++i) t.data<bf16>()[i] = bf16(static_cast<float>(r + i));
  world.all_reduce(t, ReduceOp::max)->wait();
  for (int i = 0; i < 5; ++i) CHECK(float(t.data<bf16>()[i]) == static_cast<float>(p - 1 + i));
  // A ring through batch_p2p: send to the next, receive from the previous.
  Tensor out = Tensor::empty({3}, DType::f32), in = Tensor::zeros({3}, DType::f32);
  for (int i = 0; i < 3; ++i) out.data<float>()[i] = static_cast<float>(10 * r + i);
  if (p > 1) {
    std::vector<P2POp> ops{{P2POp::Kind::recv, in, (r + p - 1) % p, 7},
                           {P2POp::Kind::send, out, (r + 1) % p, 7}};
    world.batch_p2p(std::move(ops))->wait();
    for (int i = 0; i < 3; ++i) CHECK(in.data<float>()[i] == static_cast<float>(10 * ((r + p - 1) % p) + i));
  }
  CHECK(world.staging_pool()->busy() == 0);
}

TEST_CASE("staging: the pool reuses buffers by dtype and size and forgets abandoned ones") {
  StagingPool pool(host_buffers());
  auto a = pool.take(DType::f32, 100);
  CHECK(a.host.numel() == 100);
  CHECK(pool.allocations() == 1);
  auto b = pool.take(DType::f32, 100);  // a is busy: a second buffer
  CHECK(pool.allocations() == 2);
  CHECK(a.host.raw() != b.host.raw());
  pool.give_back(a.slot);
  auto c = pool.take(DType::f32, 4000);  // fits in a's capacity (4096)
  CHECK(pool.allocations() == 2);
  CHECK(c.host.raw() == a.host.raw());
  auto d = pool.take(DType::bf16, 10);  // another dtype: a new buffer
  CHECK(pool.allocations() == 3);
  pool.give_back(d.slot);
  pool.forget(c.slot);  // MPI may still write there: never handed out again
  auto e = pool.take(DType::f32, 10);
  CHECK(e.host.raw() != c.host.raw());
  CHECK(pool.busy() == 2);  // b and e
  CHECK(staging_capacity(1) == 4096);
  CHECK(staging_capacity(5000) == 8192);
  CHECK_THROWS_AS(pool.give_back(d.slot), InternalError);  // not taken
}

TEST_CASE("staging: a device tensor without a usable GPU is refused in one line") {
  std::string why;
  if (gpu::device_count(&why) > 0) return;  // the GPU tests cover this machine
  CHECK_THROWS_WITH_AS(cuda_staging_copier(nullptr),
                       doctest::Contains("device tensors cannot be staged for MPI"), RuntimeError);
  // And a CUDA tensor cannot exist without one: the allocation names the device.
  CHECK_THROWS_WITH_AS(Tensor::empty({4}, DType::f32, Device::cuda(0)), doctest::Contains("cuda:0"),
                       RuntimeError);
}

TEST_CASE("staging: an input and an output on different devices are refused") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  // Only tensors of 4 elements are "on the device" for this copier.
  struct Picky : FakeCopier {
    bool stages(const Tensor& t) const override { return t.defined() && t.numel() == 4; }
  };
  world.set_staging(std::make_shared<Picky>(), host_buffers());
  Tensor in = Tensor::zeros({4}, DType::f32), out = Tensor::zeros({4 * world.size() + 1}, DType::f32);
  CHECK_THROWS_WITH_AS(world.all_gather(in, out), doctest::Contains("both must be on one device"),
                       RuntimeError);
  CHECK(world.next_sequence() == 1);  // refused before numbering
}

}  // namespace dtrain::test
