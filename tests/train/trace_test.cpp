// The step loop's trace (TrainerOptions::trace, `dtrain run --verbose`): the
// lines of one pipeline step, word for word, so that building them only when
// tracing is on (the trainer formats nothing otherwise) changes no output.
// Runs in test_train (mpirun -np 8; the case uses ranks 0 and 1).
#include <doctest/doctest.h>

#include <mpi.h>

#include <filesystem>

#include "../data/data_files.h"
#include "config/config.h"
#include "dist/mesh_groups.h"
#include "train/trainer.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

int rank_of_world() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

std::string trace_toml(const std::string& dir, int n_layer, const std::string& schedule) {
  return fmt::format(R"(
[model]
type = "gpt"
vocab_size = 64
context_length = 8
n_layer = {1}
n_head = 2
n_embd = 8
[data]
train = "{0}/tok_train.bin"
val = "{0}/tok_val.bin"
[train]
steps = 1
micro_batch = 1
grad_accum = 2
eval_every = 0
eval_batches = 1
threads = 1
[parallel]
pp = 2
schedule = "{2}"
[log]
out_dir = "{0}/out"
every = 1000
)", dir, n_layer, schedule);
}

}  // namespace

TEST_CASE("trace: one 1F1B and one interleaved step on pp 2 trace exactly these lines") {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 2) return;
  const std::string dir = "/tmp/dtrain_trace_" + std::to_string(::getppid());
  if (rank_of_world() == 0) {
    std::filesystem::create_directories(dir);
    std::vector<uint16_t> tokens(2000);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>((i * 7 + i / 3) % 64);
    write_bytes(dir + "/tok_train.bin", token_file(tokens));
    write_bytes(dir + "/tok_val.bin", token_file(std::vector<uint16_t>(tokens.begin(), tokens.begin() + 200)));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, rank_of_world() < 2 ? 0 : MPI_UNDEFINED, rank_of_world(), &sub);
  if (sub != MPI_COMM_NULL) {
    struct Case {
      int n_layer;
      std::string schedule;
      std::vector<std::string> want[2];  // rank 0's lines, rank 1's
    };
    const Case cases[] = {
        {2, "1f1b", {{
            "rank 0 (dp 0, tp 0, pp 0) step 0 F mb 0 slot 0 samples [0, +1): activations out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send activations of mb 0 to pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 F mb 1 slot 1 samples [1, +1): activations out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send activations of mb 1 to pp 1, recv gradients of mb 0 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 0 slot 0",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: recv gradients of mb 1 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 1 slot 1: gradient reduction over dp in 1 buckets",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 1 slot 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 embed: all_reduce of wte.weight's gradient between the first and last stage"
        }, {
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: recv activations of mb 0 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 F mb 0 slot 0 samples [0, +1): loss",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 0 slot 0: gradients out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send gradients of mb 0 to pp 0, recv activations of mb 1 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 F mb 1 slot 0 samples [1, +1): loss",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 1 slot 0: gradient reduction over dp in 1 buckets",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 1 slot 0: gradients out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send gradients of mb 1 to pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 embed: all_reduce of wte.weight's gradient between the first and last stage"
        }}},
        {4, "interleaved", {{
            "rank 0 (dp 0, tp 0, pp 0) step 0 F mb 0 chunk 0 slot 0 samples [0, +1): activations out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send activations of mb 0 chunk 0 to pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 F mb 1 chunk 0 slot 1 samples [1, +1): activations out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send activations of mb 1 chunk 0 to pp 1, recv activations of mb 0 chunk 1 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 F mb 0 chunk 1 slot 2 samples [0, +1): activations out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send activations of mb 0 chunk 1 to pp 1, recv activations of mb 1 chunk 1 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 F mb 1 chunk 1 slot 3 samples [1, +1): activations out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send activations of mb 1 chunk 1 to pp 1, recv gradients of mb 0 chunk 1 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 0 chunk 1 slot 2: gradients out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send gradients of mb 0 chunk 1 to pp 1, recv gradients of mb 1 chunk 1 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 1 chunk 1 slot 3: gradients out",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: send gradients of mb 1 chunk 1 to pp 1, recv gradients of mb 0 chunk 0 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 0 chunk 0 slot 0",
            "rank 0 (dp 0, tp 0, pp 0) step 0 pipeline: recv gradients of mb 1 chunk 0 from pp 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 1 chunk 0 slot 1: gradient reduction over dp in 1 buckets",
            "rank 0 (dp 0, tp 0, pp 0) step 0 B mb 1 chunk 0 slot 1",
            "rank 0 (dp 0, tp 0, pp 0) step 0 embed: all_reduce of wte.weight's gradient between the first and last stage"
               }, {
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: recv activations of mb 0 chunk 0 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 F mb 0 chunk 0 slot 0 samples [0, +1): activations out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send activations of mb 0 chunk 0 to pp 0, recv activations of mb 1 chunk 0 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 F mb 1 chunk 0 slot 1 samples [1, +1): activations out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send activations of mb 1 chunk 0 to pp 0, recv activations of mb 0 chunk 1 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 F mb 0 chunk 1 slot 2 samples [0, +1): loss",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: recv activations of mb 1 chunk 1 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 F mb 1 chunk 1 slot 3 samples [1, +1): loss",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 0 chunk 1 slot 2: gradients out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send gradients of mb 0 chunk 1 to pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 1 chunk 1 slot 3: gradients out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send gradients of mb 1 chunk 1 to pp 0, recv gradients of mb 0 chunk 0 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 0 chunk 0 slot 0: gradients out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send gradients of mb 0 chunk 0 to pp 0, recv gradients of mb 1 chunk 0 from pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 1 chunk 0 slot 1: gradient reduction over dp in 1 buckets",
            "rank 1 (dp 0, tp 0, pp 1) step 0 B mb 1 chunk 0 slot 1: gradients out",
            "rank 1 (dp 0, tp 0, pp 1) step 0 pipeline: send gradients of mb 1 chunk 0 to pp 0",
            "rank 1 (dp 0, tp 0, pp 1) step 0 embed: all_reduce of wte.weight's gradient between the first and last stage"
               }}},
    };
    for (const Case& k : cases) {
      std::vector<std::string> sets;
      if (k.schedule == "interleaved") sets.push_back("parallel.virtual_stages=2");
      const Config cfg = parse_config(trace_toml(dir, k.n_layer, k.schedule), "trace.toml", sets, 2);
      Mesh mesh(MeshLayout{1, 1, 2}, MpiCommOptions{}, sub);
      const Groups g = mesh_groups(mesh);
      std::vector<std::string> lines;
      TrainerOptions opts;
      opts.trace = [&lines](const std::string& l) { lines.push_back(l); };
      Trainer t(cfg, g, [](const std::string&) {}, opts);
      lines.clear();  // setup's lines are not the step's
      t.train_step(0);
      std::string all;
      for (const std::string& l : lines) all += "\n\"" + l + "\",";
      CAPTURE(k.schedule);
      CAPTURE(all);
      CHECK(lines == k.want[rank_of_world()]);
    }
    MPI_Comm_free(&sub);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank_of_world() == 0) std::filesystem::remove_all(dir);
}
