// The device plumbing on a GPU: a context, a round trip through device
// memory, an asynchronous copy on the stream, the out-of-memory message.
#include <doctest/doctest.h>

#include <string>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/cuda/context.h"
#include "ops/runtime.h"

using namespace dtrain;

TEST_CASE("cuda: a context opens and a tensor survives a round trip") {
  auto rt = ops::Runtime::open("cuda", 0, false);
  const Exec& ex = rt->exec();
  CHECK(ex.on_cuda());
  CHECK(ex.stream != nullptr);
  Tensor h = Tensor::empty(Shape{1000}, DType::f32);
  for (int i = 0; i < 1000; ++i) h.data<float>()[i] = static_cast<float>(i) * 0.5f;
  Tensor d = Tensor::empty(Shape{1000}, DType::f32, ex.device);
  d.copy_from(h);
  Tensor back = d.to_host();
  for (int i = 0; i < 1000; ++i) REQUIRE(back.data<float>()[i] == static_cast<float>(i) * 0.5f);
  d.zero_();
  back = d.to_host();
  CHECK(back.data<float>()[999] == 0.0f);
}

TEST_CASE("cuda: out of device memory names the bytes and dtrain plan") {
  auto rt = ops::Runtime::open("cuda", 0, false);
  try {
    Tensor::empty(Shape{int64_t{1} << 46}, DType::f32, rt->exec().device);  // 256 TiB
    FAIL("a 256 TiB allocation succeeded");
  } catch (const RuntimeError& e) {
    std::string m = e.what();
    CHECK(m.find("out of memory on cuda:0") != std::string::npos);
    CHECK(m.find("dtrain plan") != std::string::npos);
  }
}
