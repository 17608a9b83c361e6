// Valid configs: defaults, --set overrides, batch-size derivation, the
// resolved TOML round trip and the key reference.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/error.h"
#include "config/schema.h"

using namespace dtrain;

namespace {

const std::string kGpt = R"(
[data]
train = "data/t.bin"
val = "data/v.bin"
[train]
micro_batch = 4
)";

const std::string kCnn = R"(
[model]
type = "cnn"
[data]
train_images = "ti.idx"
train_labels = "tl.idx"
val_images = "vi.idx"
val_labels = "vl.idx"
[train]
micro_batch = 4
)";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("defaults are the documented ones") {
  Config c = parse_config(kGpt, "tiny.toml");
  CHECK(c.source == "tiny.toml");
  CHECK(c.model.type == "gpt");
  CHECK(c.model.vocab_size == 256);
  CHECK(c.model.context_length == 256);
  CHECK(c.model.n_layer == 4);
  CHECK(c.model.n_head == 4);
  CHECK(c.model.n_embd == 128);
  CHECK(c.model.dropout == 0.0);
  CHECK(c.model.bias == true);
  CHECK(c.data.train == std::vector<std::string>{"data/t.bin"});  // relative paths are kept as written
  CHECK(c.data.shuffle == true);
  CHECK(c.train.steps == 1000);
  CHECK(c.train.seed == 1337);
  CHECK(c.train.seq_len == 256);  // 0 resolves to model.context_length
  CHECK(c.train.eval_every == 100);
  CHECK(c.train.eval_batches == 20);
  CHECK(c.train.precision == "fp32");
  CHECK(c.train.device == "cpu");
  CHECK(c.train.threads == 0);
  CHECK(c.optim.name == "adamw");
  CHECK(c.optim.lr == 3e-4);
  CHECK(c.optim.min_lr == 0.0);
  CHECK(c.optim.warmup_steps == 0);
  CHECK(c.optim.schedule == "cosine");
  CHECK(c.optim.decay_steps == 1000);  // 0 resolves to train.steps
  CHECK(c.optim.weight_decay == 0.1);
  CHECK(c.optim.beta1 == 0.9);
  CHECK(c.optim.beta2 == 0.95);
  CHECK(c.optim.eps == 1e-8);
  CHECK(c.optim.momentum == 0.9);
  CHECK(c.optim.nesterov == false);
  CHECK(c.optim.grad_clip == 1.0);
  CHECK(c.parallel.dp == 1);
  CHECK(c.parallel.tp == 1);
  CHECK(c.parallel.pp == 1);
  CHECK(c.checkpoint.every == 0);
  CHECK(c.checkpoint.keep == 3);
  CHECK(c.log.every == 10);
  CHECK(c.log.out_dir == "runs/tiny");  // runs/<config file stem>
  CHECK(c.checkpoint.dir == "runs/tiny/checkpoints");

  Config n = parse_config(kCnn, "configs/mnist.toml");
  CHECK(n.model.type == "cnn");
  CHECK(n.model.in_channels == 1);
  CHECK(n.model.image_size == 28);
  CHECK(n.model.num_classes == 10);
  CHECK(n.model.stem_channels == 32);
  CHECK(n.model.channels == std::vector<int64_t>{32, 64, 128});
  CHECK(n.model.blocks == std::vector<int64_t>{1, 1, 1});
  CHECK(n.model.stem_pool == "none");
  CHECK(n.data.mean == std::vector<double>{0.1307});
  CHECK(n.data.std == std::vector<double>{0.3081});
  CHECK(n.train.seq_len == 0);  // gpt only: left alone
  CHECK(n.log.out_dir == "runs/mnist");

  Config d = default_config("cnn");
  CHECK(d.model.type == "cnn");
  CHECK(d.model.channels == n.model.channels);
  CHECK(d.optim.lr == 3e-4);
  CHECK(d.train.micro_batch == 0);  // not resolved
  CHECK(d.source.empty());
}

TEST_CASE("--set overrides the file and is applied before validation") {
  const std::string toml = kGpt + "steps = 50\nseq_len = 512\n";
  Config c = parse_config(toml, "cfg.toml",
                          {"train.steps=7", "train.steps=9",  // the last one wins
                           "optim.lr=1e-3",                   // float
                           "optim.warmup_steps=2",            // int
                           "optim.nesterov=true",             // bool
                           "data.train=other/tokens.bin",     // bare word: a string
                           "log.out_dir=\"runs/x y\"",        // quoted string
                           "model.context_length=1024"});     // makes seq_len 512 valid
  CHECK(c.train.steps == 9);
  CHECK(c.optim.lr == 1e-3);
  CHECK(c.optim.warmup_steps == 2);
  CHECK(c.optim.nesterov == true);
  CHECK(c.data.train == std::vector<std::string>{"other/tokens.bin"});
  CHECK(c.log.out_dir == "runs/x y");
  CHECK(c.checkpoint.dir == "runs/x y/checkpoints");
  CHECK(c.model.context_length == 1024);
  CHECK(c.train.seq_len == 512);
  // Without the override the same file is rejected.
  CHECK_THROWS_AS(parse_config(toml, "cfg.toml"), ConfigError);

  // Arrays, and switching the model type from the command line.
  Config n = parse_config(
      "[train]\nmicro_batch = 2\n", "cfg.toml",
      {"model.type=cnn", "data.train_images=a", "data.train_labels=b", "data.val_images=c",
       "data.val_labels=d", "model.channels=[8, 16]", "model.blocks=[2, 2]",
       "data.mean=[0.5, 0.5, 0.5]", "data.std=[1, 2, 3]", "model.in_channels=3"});
  CHECK(n.model.type == "cnn");
  CHECK(n.model.channels == std::vector<int64_t>{8, 16});
  CHECK(n.model.blocks == std::vector<int64_t>{2, 2});
  CHECK(n.data.std == std::vector<double>{1.0, 2.0, 3.0});  // integers are numbers
}

TEST_CASE("a --set value up to the 4096-byte limit parses as TOML, not as a string") {
  // The value's own limit: parsed as the line "x = <value>", it is 4 bytes longer (an array of
  // 4093-4096 bytes was read as one file name).
  for (size_t size : {4092, 4093, 4096}) {
    const std::string name(size - 4, 'a');  // ["<name>"]
    const std::string value = "[\"" + name + "\"]";
    REQUIRE(value.size() == size);
    const Config c = parse_config(kGpt, "cfg.toml", {"data.train=" + value});
    CHECK(c.data.train == std::vector<std::string>{name});
  }
}

TEST_CASE("an override of a key for the other model type is an error even when empty") {
  CHECK_THROWS_WITH_AS(parse_config(kCnn, "cfg.toml", {"data.train="}),
                       "--set data.train=: data.train: applies to model.type \"gpt\" only, but "
                       "model.type is \"cnn\"",
                       ConfigError);
}

TEST_CASE("batch sizes: any two give the third") {
  struct Case {
    int64_t global, micro, accum, dp;  // as given (0 = unset)
    int64_t want_global, want_micro, want_accum;
  };
  const Case cases[] = {
      {64, 8, 0, 2, 64, 8, 4},   // global + micro -> accum
      {64, 0, 4, 2, 64, 8, 4},   // global + accum -> micro
      {0, 8, 4, 2, 64, 8, 4},    // micro + accum -> global
      {64, 8, 4, 2, 64, 8, 4},   // all three, consistent
      {64, 0, 0, 2, 64, 32, 1},  // global only: no accumulation
      {0, 8, 0, 4, 32, 8, 1},    // micro only: no accumulation
      {12, 0, 0, 1, 12, 12, 1}, {24, 3, 0, 1, 24, 3, 8},
  };
  for (const Case& k : cases) {
    std::string toml = "[data]\ntrain = \"t\"\nval = \"v\"\n[train]\n";
    if (k.global) toml += "global_batch = " + std::to_string(k.global) + "\n";
    if (k.micro) toml += "micro_batch = " + std::to_string(k.micro) + "\n";
    if (k.accum) toml += "grad_accum = " + std::to_string(k.accum) + "\n";
    toml += "[parallel]\ndp = " + std::to_string(k.dp) + "\n";
    CAPTURE(toml);
    Config c = parse_config(toml, "cfg.toml", {}, static_cast<int>(k.dp));
    CHECK(c.train.global_batch == k.want_global);
    CHECK(c.train.micro_batch == k.want_micro);
    CHECK(c.train.grad_accum == k.want_accum);
    CHECK(c.train.global_batch == c.train.micro_batch * c.train.grad_accum * c.parallel.dp);
  }
}

TEST_CASE("parallel layout must match the ranks launched") {
  Config c = parse_config(kGpt + "[parallel]\ndp = 2\ntp = 2\n", "cfg.toml", {}, 4);
  CHECK(c.parallel.dp * c.parallel.tp * c.parallel.pp == 4);
  CHECK(c.train.global_batch == 8);  // micro 4 x accum 1 x dp 2
  CHECK_THROWS_AS(parse_config(kGpt + "[parallel]\ndp = 2\ntp = 2\n", "cfg.toml", {}, 2),
                  ConfigError);
}

TEST_CASE("to_toml round trips a gpt and a cnn config") {
  Config g = parse_config(kGpt + R"(steps = 20
seq_len = 64
eval_every = 0
[model]
vocab_size = 50257
context_length = 128
n_layer = 2
n_head = 2
n_embd = 64
dropout = 0.1
bias = false
[optim]
lr = 6e-4
min_lr = 6e-5
warmup_steps = 3
schedule = "linear"
eps = 1e-10
grad_clip = 0.0
[log]
out_dir = "runs/a \"quoted\" \\ dir"
)",
                          "gpt.toml");
  std::string text = to_toml(g);
  CAPTURE(text);
  CHECK(text.find("channels") == std::string::npos);  // cnn keys stay out
  CHECK(text.find("train_images") == std::string::npos);
  Config g2 = parse_config(text, g.source);
  CHECK(g2 == g);
  CHECK(to_toml(g2) == text);
  CHECK(g2.optim.lr == 6e-4);
  CHECK(g2.log.out_dir == "runs/a \"quoted\" \\ dir");

  Config n = parse_config(R"([model]
type = "cnn"
in_channels = 3
image_size = 32
channels = [16, 32]
blocks = [2, 3]
stem_pool = "max"
[data]
train_images = "ti.idx"
train_labels = "tl.idx"
val_images = "vi.idx"
val_labels = "vl.idx"
mean = [0.4914, 0.4822, 0.4465]
std = [0.2470, 0.2435, 0.2616]
shuffle = false
[train]
global_batch = 32
micro_batch = 4
[optim]
name = "sgd"
lr = 0.1
momentum = 0.5
nesterov = true
)",
                          "cifar.toml");
  text = to_toml(n);
  CAPTURE(text);
  CHECK(text.find("n_layer") == std::string::npos);
  CHECK(text.find("seq_len") == std::string::npos);
  CHECK(text.find("data/t.bin") == std::string::npos);
  Config n2 = parse_config(text, n.source);
  CHECK(n2 == n);
  CHECK(n2.train.grad_accum == 8);
  CHECK(n2.data.std[1] == 0.2435);
}

TEST_CASE("to_toml floats read back exactly") {
  Config c = parse_config(kGpt, "cfg.toml");
  for (double lr : {1.0, 0.1, 3e-4, 1e-8, 1.0 / 3.0, 123456789.0, 2.5e-300}) {
    c.optim.lr = lr;
    c.optim.min_lr = 0.0;
    Config back = parse_config(to_toml(c), c.source);
    CHECK(back.optim.lr == lr);
  }
}

TEST_CASE("load_config reads a file and keeps its path") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DTRAIN_BINARY_DIR) / "test_config_tmp";
  fs::create_directories(dir);
  const std::string path = (dir / "small_run.toml").string();
  std::ofstream(path) << kGpt;
  Config c = load_config(path, {"train.steps=3"});
  CHECK(c.source == path);
  CHECK(c.train.steps == 3);
  CHECK(c.log.out_dir == "runs/small_run");
}

TEST_CASE("describe_keys: one aligned line per key") {
  const std::string text = describe_keys();
  const auto lines = lines_of(text);
  CHECK(lines.size() == config::schema().size());
  // Columns line up: the type column starts at the same place on every line.
  const size_t type_col = lines[0].find("string");
  for (const auto& line : lines) {
    CAPTURE(line);
    CHECK(line.find_first_not_of(' ', line.find(' ')) == type_col);
  }
  bool found = false;
  for (const auto& line : lines) {
    if (!line.starts_with("model.n_layer ")) continue;
    found = true;
    CHECK(line.find(" int ") != std::string::npos);
    CHECK(line.find(" 4 ") != std::string::npos);
    CHECK(line.find(" gpt ") != std::string::npos);
    CHECK(line.find("[1, 65536]") != std::string::npos);
  }
  CHECK(found);
  CHECK(text.find("optim.schedule") != std::string::npos);
  CHECK(text.find("one of cosine|linear|sqrt|constant") != std::string::npos);
}

TEST_CASE("parallel.sync local: keys, data.train per replica, refusals") {
  const std::string sites = R"(
[data]
train = ["site0.bin", "site1.bin"]
val = "v.bin"
[train]
micro_batch = 4
[parallel]
dp = 2
sync = "local"
sync_every = 8
outer_optim = "nesterov"
outer_lr = 0.7
outer_momentum = 0.9
)";
  Config c = parse_config(sites, "sites.toml", {}, 2);
  CHECK(c.data.train == std::vector<std::string>{"site0.bin", "site1.bin"});
  CHECK(c.parallel.sync == "local");
  CHECK(c.parallel.sync_every == 8);
  CHECK(c.parallel.outer_optim == "nesterov");
  CHECK(c.parallel.outer_lr == 0.7);
  CHECK(c.parallel.outer_momentum == 0.9);
  // The list is written back as a list, one file as a string; both round trip.
  const std::string toml = to_toml(c);
  CHECK(toml.find("train = [\"site0.bin\", \"site1.bin\"]") != std::string::npos);
  CHECK(toml.find("sync = \"local\"") != std::string::npos);
  CHECK(parse_config(toml, "sites.toml", {}, 2) == c);
  const Config one = parse_config(kGpt, "tiny.toml");
  CHECK(to_toml(one).find("train = \"data/t.bin\"") != std::string::npos);
  CHECK(one.parallel.sync == "step");
  // One file per replica or one for all.
  CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", {"parallel.dp=4"}, 4),
                       doctest::Contains("data.train: lists 2 files, but parallel.dp is 4: give one file per "
                                         "data-parallel replica"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", {"data.train=[\"a.bin\", 3]"}, 2),
                       doctest::Contains("data.train[1]: expected a string, got an integer 3"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", {"data.train=[]"}, 2),
                       doctest::Contains("data.train: expected a string or an array of strings with at least one"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", {"data.train=[\"a.bin\", \"\"]"}, 2),
                       doctest::Contains("data.train: expected a file path"), ConfigError);
  // ZeRO shards one optimizer over the replicas; local sync has one per replica.
  CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", {"parallel.zero=1"}, 2),
                       doctest::Contains("parallel.sync = \"local\" with parallel.zero = 1"), ConfigError);
  // H = 1 with plain averaging is data parallelism (one optimizer, which ZeRO
  // may shard); H = 1 with an outer optimizer, or outer_lr != 1, is not.
  const std::vector<std::string> as_dp{"parallel.sync_every=1", "parallel.outer_optim=\"average\"",
                                       "parallel.outer_lr=1"};
  std::vector<std::string> with_zero = as_dp;
  with_zero.push_back("parallel.zero=1");
  const Config dp = parse_config(sites, "sites.toml", with_zero, 2);
  CHECK(local_sync_is_dp(dp.parallel));
  CHECK_FALSE(local_sync_active(dp.parallel));
  CHECK(dp.parallel.zero == 1);
  for (const char* other : {"parallel.outer_optim=\"nesterov\"", "parallel.outer_lr=0.5", "parallel.sync_every=2"}) {
    CAPTURE(other);
    std::vector<std::string> o = as_dp;
    o.push_back(other);
    const Config l = parse_config(sites, "sites.toml", o, 2);
    CHECK_FALSE(local_sync_is_dp(l.parallel));
    CHECK(local_sync_active(l.parallel));
    o.push_back("parallel.zero=1");
    CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", o, 2),
                         doctest::Contains("parallel.sync = \"local\" with parallel.zero = 1"), ConfigError);
  }
  CHECK_FALSE(local_sync_is_dp(one.parallel));  // sync = "step" is not local sync at all
  CHECK_FALSE(local_sync_active(one.parallel));
  CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", {"parallel.sync=\"sometimes\""}, 2),
                       doctest::Contains("parallel.sync: expected one of \"step\", \"local\""), ConfigError);
  CHECK_THROWS_WITH_AS(parse_config(sites, "sites.toml", {"parallel.sync_every=0"}, 2),
                       doctest::Contains("parallel.sync_every: expected an integer >= 1, got 0"), ConfigError);
}

TEST_CASE("a resolved config moved to another run directory takes its checkpoint directory along") {
  // A run's config.toml names both directories in full; --out (log.out_dir)
  // moves the default checkpoint directory with it, so a new run never saves
  // and prunes among the first run's checkpoints. A directory of its own stays.
  const std::string resolved = kGpt + "[log]\nout_dir = \"runs/a\"\n[checkpoint]\ndir = \"runs/a/checkpoints\"\n";
  CHECK(parse_config(resolved, "config.toml").checkpoint.dir == "runs/a/checkpoints");
  CHECK(parse_config(resolved, "config.toml", {"log.out_dir=runs/c"}).checkpoint.dir == "runs/c/checkpoints");
  CHECK(parse_config(resolved, "config.toml", {"log.out_dir=runs/c", "checkpoint.dir=keep/here"}).checkpoint.dir ==
        "keep/here");
  const std::string own = kGpt + "[log]\nout_dir = \"runs/a\"\n[checkpoint]\ndir = \"/scratch/ckpt\"\n";
  CHECK(parse_config(own, "config.toml", {"log.out_dir=runs/c"}).checkpoint.dir == "/scratch/ckpt");
}
