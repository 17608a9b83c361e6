// Bad configs: each row must give exactly the one message a user would need,
// naming the file (or --set) and the line. Rows build their TOML line by line
// so that the expected line numbers can be counted off the list.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/validate.h"
#include "core/device.h"
#include "core/error.h"

using namespace dtrain;

namespace {

using Lines = std::vector<std::string>;

std::string join(const Lines& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

Lines cat(Lines a, const Lines& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A valid gpt config, 5 lines: rows append to [train] (line 6 on) or add sections.
const Lines kGpt = {"[data]", "train = \"t.bin\"", "val = \"v.bin\"", "[train]", "micro_batch = 4"};

// A valid cnn config: `model` lines go after line 2, `data` lines after the
// [data] header (line 3 + model.size()).
Lines cnn(const Lines& model, const Lines& data = {}) {
  Lines out = {"[model]", "type = \"cnn\""};
  out = cat(out, model);
  out.push_back("[data]");
  out = cat(out, data);
  return cat(out, {"train_images = \"ti\"", "train_labels = \"tl\"", "val_images = \"vi\"",
                   "val_labels = \"vl\"", "[train]", "micro_batch = 4"});
}

// The problems parse_config reports for this config (empty if it is valid).
std::vector<std::string> problems_of(const Lines& lines, const std::vector<std::string>& sets = {},
                                     int world_size = 1) {
  try {
    parse_config(join(lines), "cfg.toml", sets, world_size);
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

struct BadCase {
  const char* what;
  Lines toml;
  std::vector<std::string> sets;
  int world_size;
  std::string expected;  // the one problem, exactly
};

const std::vector<BadCase> kBadCases = {
    {"unknown key, near miss", cat(kGpt, {"[model]", "n_layers = 3"}), {}, 1,
     "cfg.toml:7: unknown key 'model.n_layers' (did you mean 'model.n_layer'?)"},
    {"unknown key, other section", cat(kGpt, {"lr = 0.1"}), {}, 1,
     "cfg.toml:6: unknown key 'train.lr' (did you mean 'optim.lr'?)"},
    {"a problem of several keys names the --set that changed one, not the file's line",
     cat(kGpt, {"[parallel]", "dp = 1", "tp = 1"}), {"parallel.tp=2"}, 1,
     "--set parallel.tp=2: parallel: dp x tp x pp = 2 but 1 rank was launched"},
    {"unknown key, the exact name of another section's", cat(kGpt, {"zero = 1"}), {}, 1,
     "cfg.toml:6: unknown key 'train.zero' (did you mean 'parallel.zero'?)"},
    {"unknown key, unique prefix", cat(kGpt, {"[optim]", "warmup = 10"}), {}, 1,
     "cfg.toml:7: unknown key 'optim.warmup' (did you mean 'optim.warmup_steps'?)"},
    {"unknown key, two near misses", cat(kGpt, {"[optim]", "betas = 0.9"}), {}, 1,
     "cfg.toml:7: unknown key 'optim.betas' (did you mean 'optim.beta1' or 'optim.beta2'?)"},
    {"unknown key, nothing near", cat(kGpt, {"[optim]", "learning_rate = 0.1"}), {}, 1,
     "cfg.toml:7: unknown key 'optim.learning_rate'"},
    {"unknown section", cat(kGpt, {"[optimizer]", "lr = 0.1"}), {}, 1,
     "cfg.toml:6: unknown section 'optimizer' (did you mean 'optim'?)"},
    {"unknown section, nothing near", cat(kGpt, {"[wandb]", "project = \"x\""}), {}, 1,
     "cfg.toml:6: unknown section 'wandb'"},
    {"key outside any section", cat({"steps = 10"}, kGpt), {}, 1,
     "cfg.toml:1: unknown key 'steps' outside any section (did you mean 'train.steps'?)"},
    {"section that is not a table", cat({"model = 3"}, kGpt), {}, 1,
     "cfg.toml:1: model: expected a table [model], got an integer 3"},
    {"integer key given a float", cat(kGpt, {"steps = 1.5"}), {}, 1,
     "cfg.toml:6: train.steps: expected an integer, got a float 1.5"},
    {"float key given a string", cat(kGpt, {"[optim]", "lr = \"fast\""}), {}, 1,
     "cfg.toml:7: optim.lr: expected a number, got a string \"fast\""},
    {"bool key given an integer", cat(kGpt, {"[model]", "bias = 1"}), {}, 1,
     "cfg.toml:7: model.bias: expected a boolean (true or false), got an integer 1"},
    {"string key given an integer",
     {"[data]", "train = 5", "val = \"v.bin\"", "[train]", "micro_batch = 4"}, {}, 1,
     "cfg.toml:2: data.train: expected a string or an array of strings, got an integer 5"},
    {"int array given a scalar", cnn({"channels = 16"}), {}, 1,
     "cfg.toml:3: model.channels: expected an array of integers, got an integer 16"},
    {"int array element of the wrong type", cnn({"channels = [16,", "  \"a\"]"}), {}, 1,
     "cfg.toml:4: model.channels[1]: expected an integer, got a string \"a\""},
    {"float array element of the wrong type", cnn({}, {"mean = [true]"}), {}, 1,
     "cfg.toml:4: data.mean[0]: expected a number, got a boolean true"},
    {"empty array", cnn({"channels = []"}), {}, 1,
     "cfg.toml:3: model.channels: expected an array of integers with at least one entry, got []"},
    {"integer out of range", cat(kGpt, {"[model]", "n_layer = 0"}), {}, 1,
     "cfg.toml:7: model.n_layer: expected an integer in [1, 65536], got 0"},
    {"float out of a half-open range", cat(kGpt, {"[optim]", "beta2 = 1"}), {}, 1,
     "cfg.toml:7: optim.beta2: expected a number in [0, 1), got 1.0"},
    {"float array element out of range", cnn({}, {"std = [0.0]"}), {}, 1,
     "cfg.toml:4: data.std[0]: expected a number > 0, got 0.0"},
    {"int array element out of range", cnn({"channels = [8, 16, 32]", "blocks = [1, 0, 1]"}), {},
     1, "cfg.toml:4: model.blocks[1]: expected an integer in [1, 65536], got 0"},
    {"bad choice", cat(kGpt, {"[optim]", "schedule = \"step\""}), {}, 1,
     "cfg.toml:7: optim.schedule: expected one of \"cosine\", \"linear\", \"sqrt\", \"constant\", "
     "got \"step\""},
    {"decay start past the decay's end", cat(kGpt, {"[optim]", "decay_start = 1000"}), {}, 1,
     "cfg.toml:7: optim.decay_start: expected from optim.warmup_steps (0) to below optim.decay_steps (1000), got 1000"},
    {"decay start without a decay", cat(kGpt, {"[optim]", "schedule = \"constant\"", "decay_start = 10"}), {}, 1,
     "cfg.toml:8: optim.decay_start: schedule = \"constant\" has no decay to start (got 10): choose optim.schedule = "
     "\"linear\", \"sqrt\" or \"cosine\""},
    {"bad model type", cat(kGpt, {"[model]", "type = \"rnn\""}), {}, 1,
     "cfg.toml:7: model.type: expected one of \"gpt\", \"cnn\", got \"rnn\""},
    {"batch sizes inconsistent",
     {"[data]", "train = \"t\"", "val = \"v\"", "[train]", "global_batch = 64", "micro_batch = 8",
      "grad_accum = 2", "[parallel]", "dp = 2"},
     {}, 2, "cfg.toml:5: train.global_batch = 64 but micro_batch 8 x grad_accum 2 x dp 2 = 32"},
    {"batch not divisible",
     {"[data]", "train = \"t\"", "val = \"v\"", "[train]", "global_batch = 60", "micro_batch = 8"},
     {}, 1,
     "cfg.toml:5: train.global_batch = 60 is not a multiple of micro_batch 8 x dp 1 = 8, so "
     "grad_accum cannot be derived (set train.micro_batch to a divisor of global_batch / dp = 60, e.g. 6)"},
    {"micro-batch bigger than a dp rank's share (a resume on more ranks)",
     {"[data]", "train = \"t\"", "val = \"v\"", "[train]", "global_batch = 16", "micro_batch = 16", "[parallel]",
      "dp = 2"},
     {}, 2,
     "cfg.toml:5: train.global_batch = 16 is not a multiple of micro_batch 16 x dp 2 = 32, so grad_accum cannot be "
     "derived (set train.micro_batch to a divisor of global_batch / dp = 8, e.g. 8)"},
    {"global batch not divisible by dp",
     {"[data]", "train = \"t\"", "val = \"v\"", "[train]", "global_batch = 10", "[parallel]",
      "dp = 4"},
     {}, 4,
     "cfg.toml:5: train.global_batch = 10 is not a multiple of dp 4, so micro_batch (with "
     "grad_accum 1) cannot be derived"},
    {"only grad_accum", {"[data]", "train = \"t\"", "val = \"v\"", "[train]", "grad_accum = 2"},
     {}, 1,
     "cfg.toml:5: set two of train.global_batch, train.micro_batch, train.grad_accum (only "
     "train.grad_accum is set)"},
    {"a batch left unset blames the --set that unset it, not a later --set parallel.dp",
     cat(kGpt, {"[parallel]", "dp = 1"}), {"train.micro_batch=0", "parallel.dp=2"}, 2,
     "--set train.micro_batch=0: set two of train.global_batch, train.micro_batch, train.grad_accum "
     "(none is set)"},
    {"a global batch dp does not divide blames dp's --set, not an earlier one it does not involve",
     {"[data]", "train = \"t\"", "val = \"v\"", "[train]", "global_batch = 12", "[parallel]", "dp = 1"},
     {"parallel.dp=8", "train.micro_batch=0"}, 8,
     "--set parallel.dp=8: train.global_batch = 12 is not a multiple of dp 8, so micro_batch (with "
     "grad_accum 1) cannot be derived"},
    {"no batch size", {"[data]", "train = \"t\"", "val = \"v\""}, {}, 1,
     "cfg.toml: set two of train.global_batch, train.micro_batch, train.grad_accum (none is set)"},
    {"missing gpt data path", {"[data]", "train = \"t\"", "[train]", "micro_batch = 4"}, {}, 1,
     "cfg.toml: data.val: expected a file path (required for model.type \"gpt\"), got no value"},
    {"empty gpt data path",
     {"[data]", "train = \"t\"", "val = \"\"", "[train]", "micro_batch = 4"}, {}, 1,
     "cfg.toml:3: data.val: expected a file path (required for model.type \"gpt\"), got \"\""},
    {"missing cnn data path",
     {"[model]", "type = \"cnn\"", "[data]", "train_images = \"ti\"", "train_labels = \"tl\"",
      "val_images = \"vi\"", "[train]", "micro_batch = 4"},
     {}, 1,
     "cfg.toml: data.val_labels: expected a file path (required for model.type \"cnn\"), got no "
     "value"},
    {"cnn key on a gpt config", cat(kGpt, {"[model]", "channels = [8]"}), {}, 1,
     "cfg.toml:7: model.channels: applies to model.type \"cnn\" only, but model.type is \"gpt\""},
    {"cnn data key on a gpt config",
     {"[data]", "train = \"t\"", "val = \"v\"", "train_images = \"x\"", "[train]",
      "micro_batch = 4"},
     {}, 1,
     "cfg.toml:4: data.train_images: applies to model.type \"cnn\" only, but model.type is "
     "\"gpt\""},
    {"gpt key on a cnn config", cnn({"n_layer = 2"}), {}, 1,
     "cfg.toml:3: model.n_layer: applies to model.type \"gpt\" only, but model.type is \"cnn\""},
    {"blocks and channels differ in length", cnn({"blocks = [1, 1]"}), {}, 1,
     "cfg.toml:3: model.blocks: expected 3 entries (one per model.channels entry), got 2"},
    {"mean of the wrong length", cnn({"in_channels = 3"}, {"mean = [0.1, 0.2]"}), {}, 1,
     "cfg.toml:5: data.mean: expected 1 entry or 3 (one per model.in_channels), got 2 entries"},
    {"n_embd not a multiple of n_head", cat(kGpt, {"[model]", "n_embd = 100", "n_head = 3"}), {},
     1, "cfg.toml:7: model.n_embd: expected a multiple of model.n_head (3), got 100"},
    {"seq_len beyond context_length", cat(kGpt, {"seq_len = 512"}), {}, 1,
     "cfg.toml:6: train.seq_len: expected at most model.context_length (256), got 512"},
    {"min_lr above lr", cat(kGpt, {"[optim]", "lr = 1e-3", "min_lr = 1e-2"}), {}, 1,
     "cfg.toml:8: optim.min_lr: expected at most optim.lr (0.001), got 0.01"},
    {"warmup as long as the run", cat(kGpt, {"steps = 10", "[optim]", "warmup_steps = 10"}), {},
     1, "cfg.toml:8: optim.warmup_steps: expected less than train.steps (10), got 10 (a shorter run needs a shorter "
        "warmup: --set optim.warmup_steps=1, a tenth of the run, say)"},
    {"dp x tp x pp is not the world size", cat(kGpt, {"[parallel]", "tp = 2"}), {}, 1,
     "cfg.toml:7: parallel: dp x tp x pp = 2 but 1 rank was launched"},
    {"world size without parallel keys, no planner", kGpt, {}, 4,
     "cfg.toml: parallel.mode = \"auto\" on 4 ranks needs the layout planner, which this program "
     "does not have; set parallel.dp, parallel.tp and parallel.pp"},
    {"world size with manual mode", kGpt, {"parallel.mode=manual"}, 4,
     "cfg.toml: parallel: dp x tp x pp = 1 but 4 ranks were launched (--set parallel.dp=4 uses them all)"},
    {"tp does not divide the heads", cat(kGpt, {"[model]", "n_head = 6", "n_embd = 96", "[parallel]", "tp = 4"}), {}, 4,
     "cfg.toml:7: model.n_head (6) is not divisible by parallel.tp (4): tensor parallelism splits the attention "
     "heads across its ranks"},
    {"tp does not divide the MLP's width", cat(kGpt, {"[model]", "ffn_hidden = 90", "[parallel]", "tp = 4"}), {}, 4,
     "cfg.toml:7: model.ffn_hidden (90) is not divisible by parallel.tp (4): tensor parallelism splits the MLP's "
     "hidden features across its ranks"},
    {"tp does not divide SwiGLU's default width",
     cat(kGpt, {"[model]", "mlp = \"swiglu\"", "n_head = 6", "n_embd = 96", "vocab_size = 384", "[parallel]", "tp = 3"}), {}, 3,
     "cfg.toml:7: model.ffn_hidden (256, the default for model.mlp = \"swiglu\") is not divisible by parallel.tp "
     "(3): tensor parallelism splits the MLP's hidden features across its ranks"},
    {"rope on an odd head width", cat(kGpt, {"[model]", "position = \"rope\"", "n_head = 4", "n_embd = 12"}), {}, 1,
     "cfg.toml:7: model.position = \"rope\" turns pairs of each head's features: the head width model.n_embd / "
     "model.n_head (12 / 4 = 3) must be even"},
    {"key/value heads that do not divide the query heads", cat(kGpt, {"[model]", "n_kv_head = 3"}), {}, 1,
     "cfg.toml:7: model.n_kv_head: expected a divisor of model.n_head (4): each key/value head serves a group of "
     "n_head / n_kv_head query heads, got 3"},
    {"tp does not divide the key/value heads", cat(kGpt, {"[model]", "n_head = 8", "n_kv_head = 2", "[parallel]", "tp = 4"}),
     {}, 4,
     "cfg.toml:8: model.n_kv_head (2) is not divisible by parallel.tp (4): tensor parallelism splits the key/value "
     "heads across its ranks with their query heads"},
    {"rope scaling without rope", cat(kGpt, {"[model]", "rope_scaling = \"llama3\""}), {}, 1,
     "cfg.toml:7: model.rope_scaling = \"llama3\" scales rotary embeddings, but model.position = \"learned\""},
    {"rope scaling's frequency factors the wrong way round",
     cat(kGpt, {"[model]", "position = \"rope\"", "rope_scaling = \"llama3\"", "rope_high_freq_factor = 0.5"}), {}, 1,
     "cfg.toml:9: model.rope_high_freq_factor: expected more than model.rope_low_freq_factor (1), got 0.5"},
    {"an unknown norm", cat(kGpt, {"[model]", "norm = \"batchnorm\""}), {}, 1,
     "cfg.toml:7: model.norm: expected one of \"layernorm\", \"rmsnorm\", got \"batchnorm\""},
    {"tp does not divide the vocabulary", cat(kGpt, {"[model]", "vocab_size = 257", "[parallel]", "tp = 2"}), {}, 2,
     "cfg.toml:7: model.vocab_size (257) is not divisible by parallel.tp (2); use a padded vocabulary such as 320"},
    {"tp on the CNN", cnn({}), {"parallel.tp=2"}, 2,
     "--set parallel.tp=2: parallel.tp = 2: tensor parallelism is not available for the CNN; use parallel.dp and "
     "parallel.pp"},
    {"more stages than top-level layers", cat(kGpt, {"[model]", "n_layer = 2", "[parallel]", "pp = 6"}), {}, 6,
     "cfg.toml:9: parallel.pp (6) exceeds the model's 5 top-level layers (each pipeline stage needs at least one)"},
    {"more chunks than top-level layers",
     cat(kGpt, {"grad_accum = 2", "[model]", "n_layer = 2", "[parallel]", "pp = 2", "schedule = \"interleaved\"",
                "virtual_stages = 3"}),
     {}, 2,
     "cfg.toml:10: parallel.pp (2) x parallel.virtual_stages (3) exceeds the model's 5 top-level layers (each model "
     "chunk needs at least one)"},
    {"auto mode with every degree fixed", cat(kGpt, {"[parallel]", "mode = \"auto\"", "dp = 1", "tp = 1", "pp = 1"}),
     {}, 4,
     "cfg.toml:8: parallel: dp x tp x pp = 1 but 4 ranks were launched (parallel.mode = \"auto\" keeps the degrees "
     "the config sets: leave out parallel.dp, tp and pp, or the ones the planner may choose)"},
    {"no checkpoints kept", cat(kGpt, {"[checkpoint]", "keep = 0"}), {}, 1,
     "cfg.toml:7: checkpoint.keep: expected an integer >= 1, got 0"},
    {"--set of the wrong type", kGpt, {"train.steps=abc"}, 1,
     "--set train.steps=abc: train.steps: expected an integer, got a string \"abc\""},
    {"--set of an unknown key", kGpt, {"train.stepz=5"}, 1,
     "--set train.stepz=5: unknown key 'train.stepz' (did you mean 'train.steps'?)"},
    {"--set of an unknown section", kGpt, {"modle.n_layer=5"}, 1,
     "--set modle.n_layer=5: unknown section 'modle' (did you mean 'model'?)"},
    {"--set without a section", kGpt, {"lr=0.1"}, 1,
     "--set lr=0.1: unknown key 'lr' outside any section (did you mean 'optim.lr'?)"},
    {"--set of a whole section", kGpt, {"model={}"}, 1,
     "--set model={}: 'model' is a section: set one of its keys, as model.KEY=value (`dtrain keys` lists them)"},
    {"--set without a value", kGpt, {"train.steps"}, 1,
     "--set train.steps: expected section.key=value"},
    {"--set of a key for the other model type", kGpt, {"model.stem_pool=max"}, 1,
     "--set model.stem_pool=max: model.stem_pool: applies to model.type \"cnn\" only, but "
     "model.type is \"gpt\""},
    {"--set array element", cnn({}), {"model.channels=[8, -1, 4]"}, 1,
     "--set model.channels=[8, -1, 4]: model.channels[1]: expected an integer >= 1, got -1"},
};

}  // namespace

TEST_CASE("each bad config gives exactly its one message") {
  CHECK(kBadCases.size() >= 20);
  for (const BadCase& c : kBadCases) {
    const std::string what = c.what, toml = join(c.toml);
    CAPTURE(what);
    CAPTURE(toml);
    // Joined, so that doctest prints both sides when they differ.
    CHECK(join(problems_of(c.toml, c.sets, c.world_size)) == c.expected + "\n");
  }
}

TEST_CASE("train.device = cuda: refused by a build without the backend, else left to the run") {
  // A build with the backend validates a GPU config on a machine without a
  // GPU (a login node); the run checks the GPU before any work.
  const auto got = problems_of(cat(kGpt, {"device = \"cuda\""}));
  if (dtrain::gpu::built()) {
    CHECK(got.empty());
  } else {
    REQUIRE(got.size() == 1);
    CHECK(got[0] == "cfg.toml:6: train.device: cuda needs the CUDA backend, which this build does not "
                    "have (build with -DDTRAIN_CUDA=ON where the CUDA toolkit is installed)");
  }
}

TEST_CASE("the rows' base configs are valid") {
  CHECK(problems_of(kGpt).empty());
  CHECK(problems_of(cnn({})).empty());
}

TEST_CASE("a TOML syntax error is one line: the file, line, column and the line itself") {
  auto got = problems_of(cat(kGpt, {"steps = [1,", "seed = 2"}));
  REQUIRE(got.size() == 1);
  CHECK(got[0].starts_with("cfg.toml:7: TOML syntax error: "));
  CHECK(got[0].find('\n') == std::string::npos);  // not toml11's multi-line caret picture
  CHECK(got[0].find("column ") != std::string::npos);

  got = problems_of({"[model]", "n_layer = = 4"});
  REQUIRE(got.size() == 1);
  CHECK(got[0] == "cfg.toml:2: TOML syntax error: bad format: unknown value appeared (column 11 of: n_layer = = 4)");
  got = problems_of({"[data]", "train = \"abc"});
  REQUIRE(got.size() == 1);
  CHECK(got[0].ends_with("(column 9 of: train = \"abc)"));
  // A long line is shown around the column.
  got = problems_of({"[data]", "train = \"" + std::string(200, 'a') + "\" \"b\""});
  REQUIRE(got.size() == 1);
  CHECK(got[0].find('\n') == std::string::npos);
  CHECK(got[0].size() < 200);
  CHECK(got[0].ends_with("(column 212 of: ..." + std::string(55, 'a') + "\" \"b\")"));  // the line's end, around the column
  got = problems_of({"[data]", "train = = \"" + std::string(200, 'a') + "\""});
  REQUIRE(got.size() == 1);
  CHECK(got[0].ends_with("(column 9 of: train = = \"" + std::string(49, 'a') + "...)"));  // its start
  got = problems_of(cat(kGpt, {"steps = 10", "steps = 20"}));
  REQUIRE(got.size() == 1);
  CHECK(got[0].starts_with("cfg.toml:"));
  CHECK(got[0].find("already exists") != std::string::npos);

  got = problems_of({"[train", "steps = 1"});
  REQUIRE(got.size() == 1);
  CHECK(got[0].starts_with("cfg.toml:1: TOML syntax error: "));
}

TEST_CASE("a config with several problems reports all of them, in file order") {
  Lines toml = {
      "[model]",                  // 1
      "n_layers = 2",             // 2
      "n_head = 0",               // 3
      "[data]",                   // 4
      "train = \"t.bin\"",        // 5
      "[train]",                  // 6
      "steps = \"many\"",         // 7
      "global_batch = 64",        // 8
      "micro_batch = 6",          // 9
      "[optim]",                  // 10
      "name = \"adam\"",          // 11
      "beta1 = -0.1",             // 12
  };
  auto got = problems_of(toml, {"parallel.pp=two", "log.evry=5"});
  std::vector<std::string> expected = {
      "cfg.toml:2: unknown key 'model.n_layers' (did you mean 'model.n_layer'?)",
      "cfg.toml:3: model.n_head: expected an integer >= 1, got 0",
      "cfg.toml:7: train.steps: expected an integer, got a string \"many\"",
      "cfg.toml:8: train.global_batch = 64 is not a multiple of micro_batch 6 x dp 1 = 6, so "
      "grad_accum cannot be derived (set train.micro_batch to a divisor of global_batch / dp = 64, e.g. 4)",
      "cfg.toml:11: optim.name: expected one of \"adamw\", \"sgd\", got \"adam\"",
      "cfg.toml:12: optim.beta1: expected a number in [0, 1), got -0.1",
      "--set parallel.pp=two: parallel.pp: expected an integer, got a string \"two\"",
      "--set log.evry=5: unknown key 'log.evry' (did you mean 'log.every'?)",
      "cfg.toml: data.val: expected a file path (required for model.type \"gpt\"), got no value",
  };
  CHECK(join(got) == join(expected));

  // what() holds them all, one per line.
  try {
    parse_config(join(toml), "cfg.toml");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(e.kind() == ErrorKind::kConfig);
    std::string what = e.what();
    CHECK(std::count(what.begin(), what.end(), '\n') == 6);  // 7 problems without the --sets
  }
}

TEST_CASE("an array element on its own line is reported at that line") {
  auto got = problems_of(cnn({"channels = [", "  8,", "  0,", "  16,", "]"}));
  CHECK(join(got) == "cfg.toml:5: model.channels[1]: expected an integer >= 1, got 0\n");
}

TEST_CASE("load_config: a missing or unreadable file is a ConfigError naming it") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DTRAIN_BINARY_DIR) / "test_config_tmp";
  fs::create_directories(dir);
  const std::string missing = (dir / "nope.toml").string();
  CHECK_THROWS_WITH_AS(load_config(missing),
                       (missing + ": cannot read config: No such file or directory").c_str(),
                       ConfigError);
  CHECK_THROWS_WITH_AS(load_config(dir.string()),
                       (dir.string() + ": cannot read config: it is a directory").c_str(),
                       ConfigError);

  // And a file's problems name the file by the path it was given.
  const std::string bad = (dir / "bad.toml").string();
  std::ofstream(bad) << join(cat(kGpt, {"stepz = 3"}));
  const std::string expected = bad + ":6: unknown key 'train.stepz' (did you mean 'train.steps'?)";
  CHECK_THROWS_WITH_AS(load_config(bad), expected.c_str(), ConfigError);
}

TEST_CASE("the schedule's and the layout's problems are said together") {
  const auto p = problems_of(cat(kGpt, {"grad_accum = 3", "[model]", "n_layer = 2", "[parallel]", "pp = 2",
                                        "schedule = \"interleaved\"", "virtual_stages = 4"}),
                             {}, 2);
  REQUIRE(p.size() == 2);
  CHECK(p[0].find("needs train.grad_accum (micro-batches per step, 3) to be a multiple of parallel.pp (2)") !=
        std::string::npos);
  CHECK(p[1].find("parallel.pp (2) x parallel.virtual_stages (4) exceeds the model's 5 top-level layers") !=
        std::string::npos);
}

TEST_CASE("a batch that does not add up hides none of the layout's problems") {
  const auto p = problems_of(cat(kGpt, {"global_batch = 10", "[model]", "n_layer = 2", "[parallel]", "tp = 3",
                                        "virtual_stages = 2"}),
                             {}, 3);
  const std::string all = join(p);
  CAPTURE(all);
  CHECK(p.size() == 4);
  CHECK(all.find("model.n_head (4) is not divisible by parallel.tp (3)") != std::string::npos);
  CHECK(all.find("train.global_batch = 10") != std::string::npos);
  CHECK(all.find("parallel.virtual_stages = 2 needs parallel.schedule = \"interleaved\" (unset, it is \"1f1b\")") !=
        std::string::npos);
}

TEST_CASE("the data keys a model type requires are required_data_paths(type), one problem each") {
  for (const std::string type : {"gpt", "cnn"}) {
    CAPTURE(type);
    std::vector<std::string> problems;
    try {
      parse_config("[model]\ntype = \"" + type + "\"\n", "cfg.toml");
    } catch (const ConfigError& e) {
      problems = e.problems();
    }
    const std::vector<std::string>& keys = config::required_data_paths(type);
    REQUIRE(!keys.empty());
    // As many "required" problems as keys (other problems of an empty config aside).
    CHECK(std::count_if(problems.begin(), problems.end(), [](const std::string& p) {
            return p.find(": expected a file path (required for model.type") != std::string::npos;
          }) == static_cast<std::ptrdiff_t>(keys.size()));
    for (const std::string& key : keys)
      CHECK(std::any_of(problems.begin(), problems.end(), [&](const std::string& p) {
        return p.find(key + ": expected a file path (required for model.type") != std::string::npos;
      }));
  }
}
