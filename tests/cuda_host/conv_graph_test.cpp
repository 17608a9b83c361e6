// cuDNN's operation graphs for the CNN's convolutions, in CI without a GPU:
// cuDNN checks the shapes when it finalizes a graph (no device needed), so
// every convolution of every shipped CNN config is built here in the three
// passes a ConvPlan on a GPU makes, and a wrong shape must be refused with an
// error naming the convolution. The engine filter (determinism, TF32) is
// checked on its own; heuristics and execution need the GPU (tests/cuda).
#include <doctest/doctest.h>

#include <cudnn.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "kernels/cuda/conv_graph.h"
#include "model/model.h"
#include "ops/cuda/cnn_ops.h"

using namespace dtrain;
using cuda::ConvPass;

namespace {

constexpr ConvPass kPasses[] = {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter};

struct NamedConv {
  std::string config, name;
  ops::ConvGeom g;
  int64_t batch;
};

// Every convolution of every configs/*.toml whose model is a CNN, with the
// config's micro-batch, found by walking the model's layers (as built from
// the config, without allocating parameters).
std::vector<NamedConv> shipped_convolutions(int* cnn_configs) {
  std::vector<NamedConv> out;
  *cnn_configs = 0;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(std::string(DTRAIN_SOURCE_DIR) + "/configs"))
    if (e.path().extension() == ".toml") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const Config cfg = load_config(f.string());
    if (cfg.model.family() != ModelFamily::cnn) continue;
    ++*cnn_configs;
    auto m = describe_model(cfg.model, 0);
    Shape in = m->input_shape(cfg.train.micro_batch);
    std::vector<std::pair<std::string, ops::ConvGeom>> convs;
    for (const auto& layer : m->layers) {
      layer->list_convolutions(in, convs);
      in = layer->output_shape(in);
    }
    for (auto& [name, g] : convs) out.push_back({f.filename().string(), name, g, cfg.train.micro_batch});
  }
  return out;
}

}  // namespace

TEST_CASE("cuda host: cuDNN finalizes the fwd, dgrad and wgrad graphs of every convolution of the shipped CNNs") {
  int configs = 0;
  const std::vector<NamedConv> convs = shipped_convolutions(&configs);
  CHECK(configs >= 2);  // cnn-mnist and cnn-fashion-mnist at least
  // The MNIST CNN: the stem, two convolutions per block and two shortcuts.
  REQUIRE(convs.size() >= 9 * static_cast<size_t>(configs));
  int graphs = 0;
  for (const NamedConv& c : convs) {
    INFO(c.config << ": " << c.name);
    // The planned batch, and a batch of one (a smaller batch's plans are
    // made the first time it is seen, e.g. an evaluation's last).
    for (int64_t n : {c.batch, int64_t{1}})
      for (ConvPass p : kPasses)
        // beta 1: the backward passes accumulate; beta 0: their fallback (and forward).
        for (double beta : {0.0, 1.0}) {
          if (p == ConvPass::forward && beta != 0.0) continue;
          cuda::ConvGraph graph(ops::cuda_ops::conv_spec(c.name, c.g, n, DType::f32, p, beta));
          CHECK(graph.graph() != nullptr);
          ++graphs;
        }
  }
  MESSAGE(convs.size() << " convolutions in " << configs << " CNN configs: " << graphs << " fp32 graphs finalized");
}

TEST_CASE("cuda host: the shipped convolutions' graphs finalize in bf16 too") {
  int configs = 0;
  for (const NamedConv& c : shipped_convolutions(&configs)) {
    INFO(c.config << ": " << c.name);
    for (ConvPass p : kPasses)
      CHECK_NOTHROW(cuda::ConvGraph(ops::cuda_ops::conv_spec(c.name, c.g, c.batch, DType::bf16, p, 0.0)));
  }
}

TEST_CASE("cuda host: a convolution with a wrong output shape fails to finalize, naming the convolution") {
  ops::ConvGeom g;
  g.c = 16, g.h = 28, g.w = 28, g.o = 32, g.kh = g.kw = 3, g.stride = 1, g.pad = 1;
  for (ConvPass p : kPasses) {
    cuda::ConvGraphSpec s = ops::cuda_ops::conv_spec("stages.1.blocks.0.conv1", g, 64, DType::f32, p, 0.0);
    s.out_h = g.ho() - 1;  // 27 rows where the convolution makes 28
    std::string msg;
    try {
      cuda::ConvGraph graph(s);
      FAIL("cuDNN finalized a graph with a wrong output shape");
    } catch (const RuntimeError& e) {
      msg = e.what();
    }
    INFO(msg);
    if (p == ConvPass::forward) MESSAGE(msg);
    CHECK(msg.rfind("stages.1.blocks.0.conv1 " + std::string(cuda::conv_pass_name(p)) + ":", 0) == 0);
    CHECK(msg.find("y (64, 32, 27, 28)") != std::string::npos);
    CHECK(msg.find("CUDNN_STATUS_") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  // The right shape finalizes (the refusal above is about the shape).
  CHECK_NOTHROW(cuda::ConvGraph(ops::cuda_ops::conv_spec("ok", g, 64, DType::f32, ConvPass::forward, 0.0)));
}

TEST_CASE("cuda host: convolution graphs refuse what the GPU path does not run") {
  ops::ConvGeom g;
  g.c = 3, g.h = 8, g.w = 8, g.o = 4, g.kh = g.kw = 3, g.stride = 2, g.pad = 0;
  CHECK_THROWS_WITH_AS(cuda::ConvGraph(ops::cuda_ops::conv_spec("conv_f64", g, 2, DType::f64, ConvPass::forward, 0)),
                       doctest::Contains("no fp64 convolution on the GPU"), InternalError);
  cuda::ConvGraphSpec s = ops::cuda_ops::conv_spec("tiny", g, 2, DType::f32, ConvPass::forward, 0);
  s.g.h = s.g.w = 2;  // smaller than the kernel
  CHECK_THROWS_WITH_AS(cuda::ConvGraph{s}, doctest::Contains("tiny forward"), RuntimeError);
  // Odd shapes (stride 2, no padding, odd sizes) build in every pass.
  for (ConvPass p : kPasses) CHECK_NOTHROW(cuda::ConvGraph(ops::cuda_ops::conv_spec("odd", g, 3, DType::f32, p, 1.0)));
}

TEST_CASE("cuda host: the engine filter drops nondeterministic engines, and TF32 ones for strict fp32") {
  using cuda::conv_engine_rejection;
  CHECK(conv_engine_rejection({}, DType::f32, false).empty());
  CHECK(conv_engine_rejection({CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC}, DType::f32, true) == "nondeterministic");
  CHECK(conv_engine_rejection({CUDNN_NUMERICAL_NOTE_TENSOR_CORE, CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC}, DType::bf16,
                              true) == "nondeterministic");
  CHECK(!conv_engine_rejection({CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, DType::f32, false).empty());
  CHECK(conv_engine_rejection({CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, DType::f32, true).empty());
  CHECK(conv_engine_rejection({CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, DType::bf16, false).empty());
  CHECK(!conv_engine_rejection({CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS}, DType::bf16, true).empty());
  CHECK(!conv_engine_rejection({CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION}, DType::f32, true).empty());
  CHECK(conv_engine_rejection({CUDNN_NUMERICAL_NOTE_WINOGRAD, CUDNN_NUMERICAL_NOTE_FFT}, DType::f32, false).empty());
}
