// Known-answer checks of every Communicator operation on one group, run on the
// world and on every group of every mesh layout. Values depend on the member
// rank, so a wrong member order or a missing member changes the answer.
#pragma once

#include <doctest/doctest.h>

#include <numeric>
#include <vector>

#include "core/comm.h"

namespace dtrain::test {

template <class T>
Tensor filled(int64_t n, auto f) {
  Tensor t = Tensor::empty({n}, dtype_of<T>());
  for (int64_t i = 0; i < n; ++i) t.data<T>()[i] = static_cast<T>(f(i));
  return t;
}

template <class T>
void check_all_reduce(Communicator& c, int64_t n) {
  const int r = c.rank(), p = c.size();
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
    Tensor t = filled<T>(n, [&](int64_t i) { return (r + 1) * (i % 7 + 1); });
    c.all_reduce(t, op)->wait();
    const double factor = op == ReduceOp::sum ? p * (p + 1) / 2.0 : op == ReduceOp::max ? p : 1;
    int wrong = 0;
    for (int64_t i = 0; i < n; ++i)
      wrong += t.data<T>()[i] != static_cast<T>(factor * (i % 7 + 1));
    CHECK_MESSAGE(wrong == 0, c.name(), " all_reduce ", std::string(reduce_op_name(op)), " of ", n, " ",
                  std::string(dtype_name(dtype_of<T>())));
  }
}

// counts empty = equal parts of `each` elements.
inline void check_reduce_scatter(Communicator& c, std::vector<int64_t> counts, int64_t each,
                                 bool in_place) {
  const int r = c.rank(), p = c.size();
  std::vector<int64_t> parts = counts.empty() ? std::vector<int64_t>(p, each) : counts;
  const int64_t total = std::accumulate(parts.begin(), parts.end(), int64_t{0});
  const int64_t offset = std::accumulate(parts.begin(), parts.begin() + r, int64_t{0});
  Tensor in = filled<float>(total, [&](int64_t i) { return (r + 1) * (i + 1); });
  Tensor out = in_place ? in.flat_range(0, parts[r]) : Tensor::zeros({parts[r]}, DType::f32);
  c.reduce_scatter(in, out, ReduceOp::sum, counts)->wait();
  int wrong = 0;
  for (int64_t j = 0; j < parts[r]; ++j)
    wrong += out.data<float>()[j] != static_cast<float>(p * (p + 1) / 2 * (offset + j + 1));
  CHECK_MESSAGE(wrong == 0, c.name(), " reduce_scatter ", std::string(counts.empty() ? "equal" : "uneven"),
                std::string(in_place ? " in place" : ""));
}

inline void check_all_gather(Communicator& c, std::vector<int64_t> counts, int64_t each,
                             bool in_place) {
  const int r = c.rank(), p = c.size();
  std::vector<int64_t> parts = counts.empty() ? std::vector<int64_t>(p, each) : counts;
  const int64_t total = std::accumulate(parts.begin(), parts.end(), int64_t{0});
  const int64_t offset = std::accumulate(parts.begin(), parts.begin() + r, int64_t{0});
  Tensor out = filled<int32_t>(total, [](int64_t) { return -1; });
  Tensor in = in_place ? out.flat_range(offset, parts[r]) : Tensor::empty({parts[r]}, DType::i32);
  for (int64_t j = 0; j < parts[r]; ++j) in.data<int32_t>()[j] = static_cast<int32_t>(r * 1000 + j);
  c.all_gather(in, out, counts)->wait();
  int wrong = 0;
  int64_t i = 0;
  for (int m = 0; m < p; ++m)
    for (int64_t j = 0; j < parts[m]; ++j, ++i)
      wrong += out.data<int32_t>()[i] != m * 1000 + j;
  CHECK_MESSAGE(wrong == 0, c.name(), " all_gather ", std::string(counts.empty() ? "equal" : "uneven"),
                std::string(in_place ? " in place" : ""));
}

inline void check_broadcast(Communicator& c) {
  for (int root = 0; root < c.size(); ++root) {
    Tensor t = filled<double>(33, [&](int64_t i) { return c.rank() == root ? root * 10.0 + i : -1; });
    c.broadcast(t, root)->wait();
    int wrong = 0;
    for (int64_t i = 0; i < 33; ++i) wrong += t.data<double>()[i] != root * 10.0 + i;
    CHECK_MESSAGE(wrong == 0, c.name(), " broadcast from ", root);
  }
}

// Two rings at once, in opposite directions, told apart by their tags.
inline void check_send_recv(Communicator& c) {
  const int r = c.rank(), p = c.size();
  if (p == 1) return;  // the one-member group has no peer
  const int next = (r + 1) % p, prev = (r + p - 1) % p;
  Tensor out1 = filled<float>(100, [&](int64_t i) { return r * 100 + i; });
  Tensor out2 = filled<float>(10, [&](int64_t i) { return -r * 100 - i; });
  Tensor in1 = Tensor::zeros({100}, DType::f32), in2 = Tensor::zeros({10}, DType::f32);
  auto a = c.recv(in1, prev, 1);
  auto b = c.recv(in2, next, 2);
  auto s1 = c.send(out1, next, 1);
  auto s2 = c.send(out2, prev, 2);
  for (auto* w : {&a, &b, &s1, &s2}) (*w)->wait();
  int wrong = 0;
  for (int64_t i = 0; i < 100; ++i) wrong += in1.data<float>()[i] != prev * 100 + i;
  for (int64_t i = 0; i < 10; ++i) wrong += in2.data<float>()[i] != -next * 100 - i;
  CHECK_MESSAGE(wrong == 0, c.name(), " send/recv rings");
}

// Every operation, every dtype, equal and uneven parts.
inline void check_collectives(Communicator& c) {
  const int p = c.size();
  const int64_t ops_before = c.stats().ops;
  check_all_reduce<float>(c, 1000);
  check_all_reduce<double>(c, 3);
  check_all_reduce<int32_t>(c, 17);
  // Uneven parts with an empty one (member 1 gets nothing).
  std::vector<int64_t> uneven(p);
  for (int m = 0; m < p; ++m) uneven[m] = m == 1 ? 0 : m + 2;
  for (bool in_place : {false, true}) {
    check_reduce_scatter(c, {}, 5, in_place);
    check_reduce_scatter(c, uneven, 0, in_place);
    check_all_gather(c, {}, 4, in_place);
    check_all_gather(c, uneven, 0, in_place);
  }
  check_broadcast(c);
  check_send_recv(c);
  c.barrier()->wait();
  CHECK(c.stats().ops > ops_before);
}

}  // namespace dtrain::test
