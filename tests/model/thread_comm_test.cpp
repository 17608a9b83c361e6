// The in-process thread communicator the tensor-parallel tests run on: known
// answers for every collective, the same bits on every member, and failures
// (a member that throws, a member that never arrives) reported, not hung.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "gradcheck.h"
#include "thread_comm.h"

using namespace dtrain;
using namespace dtrain::testing;

TEST_CASE("thread communicator: known answers, the same bits on every member, failures reported") {
  for (int n : {1, 2, 4}) {
    CAPTURE(n);
    std::mutex mu;
    std::vector<std::vector<double>> sums(n);
    run_ranks(n, [&](Communicator& c, int r) {
      CHECK(c.size() == n);
      CHECK(c.rank() == r);
      Tensor t = Tensor::empty(Shape{3}, DType::f64);
      for (int i = 0; i < 3; ++i) t.data<double>()[i] = (r + 1) * (i + 1);
      all_reduce(c, t);
      for (int i = 0; i < 3; ++i) CHECK(t.data<double>()[i] == n * (n + 1) / 2 * (i + 1));
      Tensor f = Tensor::empty(Shape{2}, DType::f32);
      f.data<float>()[0] = static_cast<float>(r);
      f.data<float>()[1] = static_cast<float>(-r);
      all_reduce(c, f, ReduceOp::max);
      CHECK(f.data<float>()[0] == n - 1);
      CHECK(f.data<float>()[1] == 0);
      Tensor k = Tensor::empty(Shape{1}, DType::i32);
      k.data<int32_t>()[0] = 10 - r;
      all_reduce(c, k, ReduceOp::min);
      CHECK(k.data<int32_t>()[0] == 10 - (n - 1));
      // all_gather: member r gives r + 1 elements of value r.
      std::vector<int64_t> counts;
      int64_t total = 0;
      for (int q = 0; q < n; ++q) counts.push_back(q + 1), total += q + 1;
      Tensor in = Tensor::empty(Shape{r + 1}, DType::f64), out = Tensor::empty(Shape{total}, DType::f64);
      for (int64_t i = 0; i <= r; ++i) in.data<double>()[i] = r;
      c.all_gather(in, out, counts)->wait();
      for (int q = 0, i = 0; q < n; ++q)
        for (int j = 0; j <= q; ++j, ++i) CHECK(out.data<double>()[i] == q);
      // reduce_scatter: equal parts of (n * 2), member r gets the sum of its part.
      Tensor full = Tensor::empty(Shape{2 * n}, DType::f64), part = Tensor::empty(Shape{2}, DType::f64);
      for (int64_t i = 0; i < 2 * n; ++i) full.data<double>()[i] = i + r;
      c.reduce_scatter(full, part, ReduceOp::sum)->wait();
      for (int64_t i = 0; i < 2; ++i) CHECK(part.data<double>()[i] == n * (2 * r + i) + n * (n - 1) / 2);
      Tensor b = Tensor::empty(Shape{1}, DType::f64);
      b.data<double>()[0] = r == n - 1 ? 42 : r;
      c.broadcast(b, n - 1)->wait();
      CHECK(b.data<double>()[0] == 42);
      c.barrier()->wait();
      // Sums of values that round differently in different orders: every
      // member gets the same bits.
      Tensor s = random_tensor(Shape{64}, 9 + r, 1e3);
      all_reduce(c, s);
      std::lock_guard<std::mutex> lock(mu);
      sums[r].assign(s.data<double>(), s.data<double>() + 64);
      CHECK(c.stats().ops == 8);
    });
    for (int r = 1; r < n; ++r) CHECK(std::memcmp(sums[r].data(), sums[0].data(), 64 * sizeof(double)) == 0);
  }

  // A member that fails does not leave the others waiting: its error is the one reported.
  CHECK_THROWS_WITH(run_ranks(3,
                              [](Communicator& c, int r) {
                                if (r == 1) throw InputError("member 1 broke");
                                all_reduce(c, Tensor::zeros(Shape{4}, DType::f64));
                                all_reduce(c, Tensor::zeros(Shape{4}, DType::f64));
                              }),
                    "member 1 broke");
  // A member that never arrives is named after the timeout.
  CHECK_THROWS_WITH(run_ranks(2,
                              [](Communicator& c, int r) {
                                c.set_timeout(0.2);
                                if (r == 0) all_reduce(c, Tensor::zeros(Shape{4}, DType::f64));
                              }),
                    doctest::Contains("members 1 did not arrive"));
}
