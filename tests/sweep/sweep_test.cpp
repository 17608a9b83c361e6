// The sweep file's parser and checks, the trials it expands into (grid and
// seeded random draws), ASHA's decisions, the sweep record and the metrics
// reader.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <doctest/doctest.h>

#include "core/error.h"
#include "sweep/asha.h"
#include "sweep/record.h"
#include "sweep/sweep.h"

namespace fs = std::filesystem;
using namespace dtrain::sweep;

namespace {

// The problems a bad sweep text gives, joined.
std::string problems_of(const std::string& text) {
  try {
    parse_spec_text(text, "s.toml");
  } catch (const dtrain::ConfigError& e) {
    std::string all;
    for (const auto& p : e.problems()) all += p + "\n";
    return all;
  }
  return "";
}

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/dtrain-sweep-test.XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

const char* kBase = R"(
[model]
type = "gpt"
vocab_size = 256
context_length = 16
n_layer = 2
n_head = 2
n_embd = 32
[data]
train = "t.bin"
val = "v.bin"
[train]
steps = 40
micro_batch = 4
eval_every = 10
)";

}  // namespace

TEST_CASE("a grid runs every combination, the first axis slowest") {
  const Spec s = parse_spec_text(R"(
base = "b.toml"
[space]
"optim.lr" = [1e-3, 2e-3]
"model.n_layer" = [1, 2, 3]
)", "dir/s.toml");
  CHECK(s.search == "grid");
  CHECK(s.trials == 6);
  CHECK(s.base == "dir/b.toml");
  CHECK(s.metric == "eval_loss");
  CHECK(s.mode == "min");
  const auto t = make_trials(s);
  REQUIRE(t.size() == 6);
  // keys sorted: model.n_layer first
  CHECK(t[0].overrides == std::vector<std::string>{"model.n_layer=1", "optim.lr=0.001"});
  CHECK(t[1].overrides == std::vector<std::string>{"model.n_layer=1", "optim.lr=0.002"});
  CHECK(t[5].overrides == std::vector<std::string>{"model.n_layer=3", "optim.lr=0.002"});
  CHECK(values_text(t[1]) == "model.n_layer=1 optim.lr=0.002");
}

TEST_CASE("choices become the literal --set takes for the key's type") {
  const Spec s = parse_spec_text(R"(
base = "b.toml"
[space]
"optim.lr" = [1, 0.5]
"optim.name" = ["sgd", "adamw"]
"optim.nesterov" = [true]
"model.channels" = [[8, 16], [4]]
)", "s.toml");
  const auto t = make_trials(s);
  REQUIRE(t.size() == 8);
  CHECK(t[0].overrides == std::vector<std::string>{"model.channels=[8, 16]", "optim.lr=1.0", "optim.name=\"sgd\"",
                                                   "optim.nesterov=true"});
}

TEST_CASE("a path-list key takes a path or a list of paths as each choice") {
  const Spec s = parse_spec_text(R"(
base = "b.toml"
[space]
"data.train" = ["a.bin", ["b0.bin", "b1.bin"]]
)", "s.toml");
  const auto t = make_trials(s);
  REQUIRE(t.size() == 2);
  CHECK(t[0].overrides == std::vector<std::string>{"data.train=\"a.bin\""});
  CHECK(t[1].overrides == std::vector<std::string>{"data.train=[\"b0.bin\", \"b1.bin\"]"});
  CHECK(problems_of("base = \"b.toml\"\n[space]\n\"data.train\" = [3]\n").find(
            "s.toml:3: space.\"data.train\": expected a string") == 0);
}

TEST_CASE("random search is reproducible, within bounds, and extends with more trials") {
  const std::string text = R"(
base = "b.toml"
trials = 200
seed = 7
[space]
"optim.lr" = { dist = "log-uniform", low = 1e-4, high = 1e-2 }
"optim.weight_decay" = { dist = "uniform", low = 0.0, high = 0.5 }
"model.n_layer" = { dist = "uniform", low = 1, high = 4 }
"train.micro_batch" = { dist = "log-uniform", low = 2, high = 64 }
"optim.name" = ["sgd", "adamw"]
)";
  const Spec s = parse_spec_text(text, "s.toml");
  CHECK(s.search == "random");
  const auto a = make_trials(s), b = make_trials(s);
  REQUIRE(a.size() == 200);
  std::set<std::string> layers, names;
  int low_lr = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].overrides == b[i].overrides);
    REQUIRE(a[i].overrides.size() == 5);
    const double n_layer = std::stod(a[i].overrides[0].substr(a[i].overrides[0].find('=') + 1));
    CHECK(n_layer >= 1);
    CHECK(n_layer <= 4);
    CHECK(a[i].overrides[0].find('.', 6) == std::string::npos);  // an integer literal
    layers.insert(a[i].overrides[0]);
    const double lr = std::stod(a[i].overrides[1].substr(a[i].overrides[1].find('=') + 1));
    CHECK(lr >= 1e-4);
    CHECK(lr <= 1e-2);
    low_lr += lr < 1e-3;
    names.insert(a[i].overrides[2]);
    const double wd = std::stod(a[i].overrides[3].substr(a[i].overrides[3].find('=') + 1));
    CHECK(wd >= 0);
    CHECK(wd <= 0.5);
    const int mb = std::stoi(a[i].overrides[4].substr(a[i].overrides[4].find('=') + 1));
    CHECK(mb >= 2);
    CHECK(mb <= 64);
  }
  CHECK(layers.size() == 4);
  CHECK(names.size() == 2);
  CHECK(low_lr > 70);  // log-uniform: half below the geometric middle 1e-3
  CHECK(low_lr < 130);
  // More trials keep the first ones; another seed draws others.
  Spec more = s;
  more.trials = 300;
  CHECK(make_trials(more)[150].overrides == a[150].overrides);
  Spec other = s;
  other.seed = 8;
  CHECK(make_trials(other)[0].overrides != a[0].overrides);
}

TEST_CASE("bad sweep files name the file, line and key") {
  CHECK(problems_of("base = \"b.toml\"\n[space]\n\"optim.lrr\" = [1e-3]\n") ==
        "s.toml:3: space.\"optim.lrr\": unknown config key (did you mean 'optim.lr'?) (dtrain keys lists them)\n");
  CHECK(problems_of("base = \"b.toml\"\n[space]\noptim.lr = [1e-3]\n").find(
            "s.toml:3: space.\"optim\": a table of keys: write config keys in quotes") == 0);
  CHECK(problems_of("base = \"b.toml\"\n[space]\n\"optim.lr\" = []\n") == "s.toml:3: space.\"optim.lr\": an empty list of choices\n");
  CHECK(problems_of("base = \"b.toml\"\n[space]\n").find("s.toml:2: space: empty") == 0);
  CHECK(problems_of("base = \"b.toml\"\n").find("s.toml: space: missing") == 0);
  CHECK(problems_of("[space]\n\"optim.lr\" = [1]\n") == "s.toml: base: missing: base = \"config.toml\"\n");
  CHECK(problems_of("base = \"b.toml\"\ntrials = 3\n[space]\n\"optim.lr\" = {dist = \"normal\", low = 1, high = 2}\n")
            .find("s.toml:4: space.\"optim.lr\".dist: expected one of \"uniform\", \"log-uniform\", got \"normal\"") == 0);
  CHECK(problems_of("base = \"b.toml\"\ntrials = 3\n[space]\n\"optim.lr\" = {dist = \"log-uniform\", low = 0, high = 2}\n") ==
        "s.toml:4: space.\"optim.lr\": log-uniform needs low > 0, got 0.0\n");
  CHECK(problems_of("base = \"b.toml\"\ntrials = 3\n[space]\n\"optim.lr\" = {dist = \"uniform\", low = 2, high = 1}\n") ==
        "s.toml:4: space.\"optim.lr\": expected low < high, got low = 2.0 and high = 1.0\n");
  CHECK(problems_of("base = \"b.toml\"\n[space]\n\"optim.lr\" = {dist = \"uniform\", low = 1, high = 2}\n") ==
        "s.toml: trials: missing: random search needs trials = N\n");
  CHECK(problems_of("base = \"b.toml\"\ntrials = 2\n[space]\n\"optim.name\" = {dist = \"uniform\", low = 1, high = 2}\n")
            .find("a distribution needs a numeric key") != std::string::npos);
  CHECK(problems_of("base = \"b.toml\"\n[space]\n\"model.n_layer\" = [1, 2.5]\n") ==
        "s.toml:3: space.\"model.n_layer\": expected an integer, got a float 2.5\n");
  CHECK(problems_of("base = \"b.toml\"\nmetrc = \"loss\"\n[space]\n\"optim.lr\" = [1]\n") ==
        "s.toml:2: metrc: unknown sweep key (did you mean 'metric'?)\n");
  CHECK(problems_of("base = \"b.toml\"\nmetric = \"eval_los\"\n[space]\n\"optim.lr\" = [1]\n").find("(did you mean 'eval_loss'?)") !=
        std::string::npos);
  CHECK(problems_of("base = \"b.toml\"\nmode = \"minimum\"\n[space]\n\"optim.lr\" = [1]\n").find("s.toml:2: mode: expected one of") == 0);
  CHECK(problems_of("base = \"b.toml\"\nconcurrency = 0\n[space]\n\"optim.lr\" = [1]\n") ==
        "s.toml:2: concurrency: expected an integer >= 1, got 0\n");
  CHECK(problems_of("base = \"b.toml\"\n[asha]\nrungs = [10, 5]\n[space]\n\"optim.lr\" = [1]\n") ==
        "s.toml:3: asha.rungs: expected increasing steps\n");
  CHECK(problems_of("base = \"b.toml\"\n[asha]\nreduction = 2\n[space]\n\"optim.lr\" = [1]\n").find(
            "asha: needs rungs = [steps, ...] or min_steps = N") != std::string::npos);
  CHECK(problems_of("base = \"b.toml\"\nsearch = \"grid\"\n[space]\n\"optim.lr\" = {dist = \"uniform\", low = 1, high = 2}\n")
            .find("s.toml:4: search = \"grid\" takes lists of choices only") == 0);
  CHECK(problems_of("base = \"b.toml\"\n[space]\n\"log.out_dir\" = [\"a\"]\n").find("sets each trial's directory") !=
        std::string::npos);
  CHECK(problems_of("base = \"b.toml\"\n[space\n").find("s.toml:2: TOML syntax error") == 0);
  CHECK(problems_of("base = \"b.toml\"\n[space\n") ==  // one line, no caret picture
        "s.toml:2: TOML syntax error: an invalid key appeared (column 1 of: [space)\n");
  CHECK(problems_of("base = \"b.toml\"\nx = " + std::string(100, '[') + "\n").find("s.toml:2: arrays or inline tables nested") == 0);
  CHECK(problems_of("trials = 99999999999999999999\n").find("s.toml:1: integer 99999999999999999999 is outside") == 0);
}

TEST_CASE("every trial's config is checked with the config library, each problem once") {
  TempDir d;
  d.write("b.toml", kBase);
  Spec s = parse_spec_text(R"(
base = "b.toml"
[space]
"optim.lr" = [1e-3, -1.0]
"model.n_head" = [2, 3]
)", (d.path / "s.toml").string());
  const auto trials = make_trials(s);
  try {
    check_trials(s, trials);
    FAIL("no error");
  } catch (const dtrain::ConfigError& e) {
    const auto& p = e.problems();
    REQUIRE(p.size() == 2);  // lr=-1 (in two trials, said once); n_head=3 does not divide n_embd
    CHECK(p[0].find("s.toml: trial 1 (model.n_head=2 optim.lr=-1.0): ") != std::string::npos);
    CHECK(p[0].find("optim.lr") != std::string::npos);
    CHECK(p[1].find("trial 2 (model.n_head=3 optim.lr=0.001)") != std::string::npos);
  }
  // A distribution's ends are checked even where no draw lands.
  Spec r = parse_spec_text("base = \"b.toml\"\ntrials = 1\n[space]\n\"optim.lr\" = {dist = \"uniform\", low = 1e-3, high = 0.1}\n"
                           "\"optim.beta1\" = {dist = \"uniform\", low = 0.5, high = 1.5}\n",
                           (d.path / "s.toml").string());
  try {
    check_trials(r, make_trials(r));
    FAIL("no error");
  } catch (const dtrain::ConfigError& e) {
    REQUIRE(!e.problems().empty());  // and the trial, if its draw is >= 1
    CHECK(e.problems()[0].find("space.\"optim.beta1\" (high = 1.5)") != std::string::npos);
  }
  // A missing base file.
  Spec m = parse_spec_text("base = \"nope.toml\"\n[space]\n\"optim.lr\" = [1e-3]\n", (d.path / "s.toml").string());
  CHECK_THROWS_WITH_AS(check_trials(m, make_trials(m)), doctest::Contains("base: "), dtrain::ConfigError);
  // Rungs must fall on evaluations; min_steps resolves into rungs below train.steps.
  Spec a = parse_spec_text("base = \"b.toml\"\n[asha]\nrungs = [15]\n[space]\n\"optim.lr\" = [1e-3]\n",
                           (d.path / "s.toml").string());
  CHECK_THROWS_WITH_AS(check_trials(a, make_trials(a)), doctest::Contains("not all multiples"), dtrain::ConfigError);
  Spec g = parse_spec_text("base = \"b.toml\"\n[asha]\nmin_steps = 5\nreduction = 2\n[space]\n\"optim.lr\" = [1e-3]\n",
                           (d.path / "s.toml").string());
  g.metric = "loss";
  check_trials(g, make_trials(g));
  CHECK(g.asha.rungs == std::vector<int64_t>{5, 10, 20});
  // eval_accuracy is a classifier's.
  Spec c = parse_spec_text("base = \"b.toml\"\nmetric = \"eval_accuracy\"\nmode = \"max\"\n[space]\n\"optim.lr\" = [1e-3]\n",
                           (d.path / "s.toml").string());
  CHECK_THROWS_WITH_AS(check_trials(c, make_trials(c)), doctest::Contains("for classifiers"), dtrain::ConfigError);
}

TEST_CASE("ASHA keeps the best 1/reduction at each rung") {
  Asha a({10, 20}, 2, /*maximize=*/false);
  CHECK(a.decide(10, 3.0));   // first at the rung: goes on
  CHECK(!a.decide(10, 4.0));  // 2 seen, keep 1: 3.0 is better
  CHECK(a.decide(10, 2.0));   // 3 seen, keep 1: the best
  CHECK(a.decide(10, 2.5));   // 4 seen, keep 2: second best
  CHECK(!a.decide(10, 3.5));  // 5 seen, keep 2
  CHECK(!a.decide(10, std::nan("")));
  CHECK(a.decide(20, 9.0));  // rungs are separate
  Asha m({10}, 3, /*maximize=*/true);
  m.record(10, 0.5);
  m.record(10, 0.9);
  CHECK(m.decide(10, 0.95));   // 3 seen, keep 1
  CHECK(!m.decide(10, 0.6));   // 4 seen, keep 1
  CHECK(m.decide(10, 0.95));   // a tie with the best goes on
}

TEST_CASE("the record round-trips, and the metrics reader follows a growing, trimmed file") {
  TempDir d;
  SweepRecord r{"s.toml", "eval_loss", "min", {}};
  TrialRecord t;
  t.id = 3;
  t.overrides = {"optim.lr=0.001"};
  t.dir = "x/trial_003";
  t.state = "stopped";
  t.best = 1.25;
  t.best_step = 10;
  t.steps = 12;
  t.rungs = {{10, 1.25}, {20, std::nan("")}};
  t.stopped_at = 10;
  t.pid = 42;
  t.pid_start = 123456789;
  r.trials = {t, TrialRecord{}};
  save_record(d.path.string(), r);
  const auto back = load_record(d.path.string());
  REQUIRE(back);
  REQUIRE(back->trials.size() == 2);
  const TrialRecord& b = back->trials[0];
  CHECK(b.state == "stopped");
  CHECK(*b.best == 1.25);
  CHECK(b.rungs.at(10) == 1.25);
  CHECK(std::isnan(b.rungs.at(20)));
  CHECK(b.pid_start == 123456789);
  CHECK(b.done());
  CHECK(!back->trials[1].best);
  CHECK(!load_record((d.path / "none").string()));
  d.write("sweep.json", "{\"sweep_file\": 1}");
  CHECK_THROWS_AS(load_record(d.path.string()), dtrain::InputError);

  const std::string m = d.write("metrics.jsonl", "{\"step\": 0, \"eval_loss\": 5.0}\n{\"step\": 1, \"loss\": 4.9}\n{\"step\": 2, \"lo");
  MetricsTail tail(m, "eval_loss");
  tail.poll();
  CHECK(tail.points().size() == 1);
  CHECK(tail.last_step() == 1);
  CHECK(!tail.at_rung(2, false));
  std::ofstream(m, std::ios::app) << "ss\": 4.8}\n{\"step\": 2, \"eval_loss\": 4.0}\n{\"step\": 3, \"eval_loss\": null}\n";
  tail.poll();
  REQUIRE(tail.points().size() == 3);
  CHECK(tail.last_step() == 3);
  CHECK(*tail.at_rung(2, false) == 4.0);
  CHECK(tail.best(false)->step == 2);
  CHECK(tail.best(true)->value == 5.0);
  CHECK(!tail.at_rung(10, true));  // ended before the rung
  d.write("metrics.jsonl", "{\"step\": 0, \"eval_loss\": 7.0}\n");  // trimmed (a resume)
  tail.poll();
  CHECK(tail.points().size() == 1);
  CHECK(tail.best(false)->value == 7.0);
}
