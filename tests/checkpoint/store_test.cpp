// The directory protocol (names, keep-N, leftovers of interrupted saves,
// replacing a step, the latest pointer, which run a directory belongs to), the preemption signal watch, the
// resume-time config rules, and trimming a resumed run's metrics.
#include <doctest/doctest.h>

#include <unistd.h>

#include <sys/wait.h>

#include <csignal>

#include "checkpoint/manifest.h"
#include "checkpoint/preempt.h"
#include "checkpoint/resume.h"
#include "checkpoint/store.h"
#include "config/config.h"
#include "helpers.h"

using namespace dtrain;
using namespace dtrain::testing;

TEST_CASE("step directory names") {
  CHECK(store::step_dir_name(100) == "step_00000100");
  CHECK(store::step_dir_name(123456789) == "step_123456789");
  CHECK(store::parse_step_dir_name("step_00000100") == 100);
  CHECK(store::parse_step_dir_name("step_123456789") == 123456789);
  CHECK(!store::parse_step_dir_name("step_00000100.tmp"));
  CHECK(!store::parse_step_dir_name("step_00000100.old"));
  CHECK(!store::parse_step_dir_name("step_001"));
  CHECK(!store::parse_step_dir_name("latest"));
}

namespace {
std::string save(const TempDir& dir, Model& m, Optimizer& o, int64_t step, int64_t keep,
                 std::vector<std::string>* ops = nullptr) {
  auto world = make_self_communicator("world");
  SaveOptions so;
  so.keep = keep;
  if (ops) so.on_file_op = [ops](const std::string& what) { ops->push_back(what); };
  return save_checkpoint(dir.str(), test_meta(step), collect_pieces(m, o), *world, so).dir;
}
}  // namespace

TEST_CASE("keep-N deletes the oldest after a newer one is complete, and latest names the newest") {
  TempDir dir;
  auto m = build_model(tiny_gpt(), 8, DType::f32, Device::cpu(), 1);
  auto o = make_optimizer(optim("adamw"), m->params);
  for (int64_t step = 1; step <= 5; ++step) save(dir, *m, *o, step, 2);
  const auto left = store::list_complete(dir.path);
  REQUIRE(left.size() == 2);
  CHECK(left[0].step == 5);
  CHECK(left[1].step == 4);
  CHECK(store::read_latest(dir.path) == "step_00000005");
  // The file operations of one save, in order: publish before pruning.
  std::vector<std::string> ops;
  save(dir, *m, *o, 6, 2, &ops);
  auto at = [&](const std::string& prefix) {
    for (size_t i = 0; i < ops.size(); ++i)
      if (ops[i].rfind(prefix, 0) == 0) return static_cast<int64_t>(i);
    return int64_t{-1};
  };
  CHECK(at("mkdir step_00000006.tmp") >= 0);
  CHECK(at("sync rank_00000.h5") > at("create rank_00000.h5"));
  CHECK(at("sync checkpoint.h5") > at("sync rank_00000.h5"));
  CHECK(at("rename step_00000006.tmp -> step_00000006") > at("sync checkpoint.h5"));
  CHECK(at("rename latest.tmp -> latest") > at("rename step_00000006.tmp"));
  CHECK(at("rename step_00000004 -> step_00000004.old") > at("rename latest.tmp"));
  CHECK(!fs::exists(dir.path / "step_00000004"));
}

TEST_CASE("leftovers of an interrupted save are ignored and then removed, and a step can be rewritten") {
  TempDir dir;
  auto m = build_model(tiny_gpt(), 8, DType::f32, Device::cpu(), 1);
  auto o = make_optimizer(optim("sgd"), m->params);
  const std::string first = save(dir, *m, *o, 3, 0);
  fs::create_directories(dir.path / "step_00000009.tmp");
  fs::create_directories(dir.path / "step_00000002.old");
  write_file(dir.path / "step_00000009.tmp" / "rank_00000.h5", "partial");
  CHECK(store::list_complete(dir.path).size() == 1);
  const std::string id = read_meta(first).id;
  save(dir, *m, *o, 3, 0);  // the same step again: replaced whole
  CHECK(read_meta(first).id != id);
  CHECK(!fs::exists(dir.path / "step_00000009.tmp"));
  CHECK(!fs::exists(dir.path / "step_00000002.old"));
  CHECK(!fs::exists(dir.path / "step_00000003.old"));
  CHECK(store::list_complete(dir.path).size() == 1);
}

TEST_CASE("a directory of checkpoints belongs to the run its run file or 'latest' names, else to most") {
  TempDir dir;
  auto checkpoint = [&](int64_t step, const std::string& run) {  // a manifest is all find_checkpoints reads
    const fs::path d = dir.path / store::step_dir_name(step);
    fs::create_directories(d);
    ckpt_manifest::Manifest m;
    m.step = step;
    m.id = fmt::format("{:016x}", step);
    m.run = run;
    write_file(d / ckpt_manifest::kFile, ckpt_manifest::to_text(m));
  };
  checkpoint(1, "aaaa");
  checkpoint(2, "aaaa");
  checkpoint(3, "bbbb");  // another run's, copied in: the newest by its step
  checkpoint(4, "");      // written before run ids: never compared
  Candidates c = find_checkpoints(dir.path.string());
  CHECK(c.run == "aaaa");  // no latest: 2 of the 4
  CHECK(c.run_source.find("2 of its 4") != std::string::npos);
  REQUIRE(c.runs.size() == 4);
  CHECK(c.runs == std::vector<std::string>{"", "bbbb", "aaaa", "aaaa"});  // newest first
  write_file(dir.path / store::kLatestFile, "step_00000002\n");
  c = find_checkpoints(dir.path.string());
  CHECK(c.run == "aaaa");
  CHECK(c.run_source.find("step_00000002, which 'latest' names") != std::string::npos);
  write_file(dir.path / store::kLatestFile, "step_00000003\n");  // the other run wrote here last
  CHECK(find_checkpoints(dir.path.string()).run == "bbbb");
  // A damaged manifest is not a vote (loading it reports the damage).
  write_file(dir.path / store::kLatestFile, "step_00000009\n");
  write_file(dir.path / "step_00000001" / ckpt_manifest::kFile, "garbage");
  checkpoint(5, "bbbb");
  c = find_checkpoints(dir.path.string());
  CHECK(c.run == "bbbb");  // 2 (steps 3, 5) against 1 (step 2); the newest of the most wins ties
  CHECK(c.runs.back() == "");
  // The run file, which each save writes before 'latest', says it before anything else.
  write_file(dir.path / store::kRunFile, "aaaa\n");
  c = find_checkpoints(dir.path.string());
  CHECK(c.run == "aaaa");
  CHECK(c.run_source == "as its 'run' file says");
  write_file(dir.path / store::kRunFile, "not hex\n");  // unreadable: as if absent
  CHECK(find_checkpoints(dir.path.string()).run == "bbbb");
}

TEST_CASE("preemption signals are held pending and polled, not delivered") {
  SignalWatch w({SIGUSR1, SIGUSR2});
  CHECK(!w.poll());
  CHECK(w.received().empty());
  std::raise(SIGUSR2);  // blocked: the process lives on
  CHECK(w.poll());
  CHECK(w.received() == "SIGUSR2");
  std::raise(SIGUSR1);
  CHECK(w.poll());
  CHECK(w.received() == "SIGUSR2");  // the first one stays the reason
}

TEST_CASE("a second Ctrl-C ends the process, also where SIGINT was ignored (a script's background job)") {
  for (bool ignored : {false, true}) {
    CAPTURE(ignored);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // the child: the first SIGINT polled, the second its default action
      if (ignored) std::signal(SIGINT, SIG_IGN);
      {
        SignalWatch w({SIGTERM, SIGINT});
        std::raise(SIGINT);
        if (!w.poll() || w.received() != "SIGINT") _exit(3);
        std::raise(SIGINT);  // ends the process here
      }
      _exit(4);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == SIGINT);
    if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0);  // 3: not polled; 4: the second lived on
  }
  // Without a second one, the action before the watch is back at its end.
  std::signal(SIGINT, SIG_IGN);
  {
    SignalWatch w({SIGINT});
    std::raise(SIGINT);
    CHECK(w.poll());
  }
  struct sigaction now {};
  sigaction(SIGINT, nullptr, &now);
  CHECK((now.sa_handler == SIG_IGN));
  std::signal(SIGINT, SIG_DFL);
}

namespace {
CheckpointMeta meta_of(const std::string& toml) {
  CheckpointMeta m = test_meta(10);
  m.config = to_toml(parse_config(toml, "cfg.toml"));
  return m;
}

const char* kConfig = R"([model]
type = "gpt"
n_layer = 2
[data]
train = "t.bin"
val = "v.bin"
[train]
steps = 10
global_batch = 4
micro_batch = 2
[log]
out_dir = "runs/a"
)";
}  // namespace

TEST_CASE("resume config: changes are listed, changes that cannot apply are refused by key") {
  const CheckpointMeta meta = meta_of(kConfig);
  ResumeConfig rc = resume_config(meta, "ck/step_00000010", {"train.steps=20", "optim.lr=1e-3"}, "", 1);
  CHECK(rc.cfg.train.steps == 20);
  CHECK(rc.cfg.optim.decay_steps == 10);  // the schedule of the original run, unless given
  REQUIRE(rc.changes.size() == 2);
  CHECK(rc.changes[0] ==
        "train.steps: 10 -> 20 (optim.decay_steps stays 10: the learning rate reaches optim.min_lr there and stays; "
        "--set optim.decay_steps=20 stretches the schedule)");
  CHECK(rc.changes[1] == "optim.lr: 0.0003 -> 0.001");
  rc = resume_config(meta, "ck/step_00000010", {"train.steps=20", "optim.decay_steps=20"}, "", 1);
  CHECK(rc.changes[0] == "train.steps: 10 -> 20");  // stretched: nothing to say
  rc = resume_config(meta, "ck/step_00000010", {"train.steps=5"}, "", 1);
  // Shorter: the run ends before the schedule does, said with how to end it there.
  CHECK(rc.changes[0] ==
        "train.steps: 10 -> 5 (optim.decay_steps stays 10: the run ends before the learning rate has decayed to "
        "optim.min_lr; --set optim.decay_steps=5 ends the decay with the run)");
  rc = resume_config(meta, "ck/step_00000010", {"train.steps=5", "optim.decay_steps=5"}, "", 1);
  CHECK(rc.changes[0] == "train.steps: 10 -> 5");

  rc = resume_config(meta, "ck/step_00000010", {}, "runs/b", 1);
  CHECK(rc.cfg.log.out_dir == "runs/b");
  CHECK(rc.cfg.checkpoint.dir == "runs/b/checkpoints");
  CHECK(rc.changes.size() == 2);

  try {
    resume_config(meta, "ck/step_00000010", {"model.n_layer=3", "train.seed=5", "train.steps=30"}, "", 1);
    FAIL("no error");
  } catch (const ConfigError& e) {
    REQUIRE(e.problems().size() == 2);
    CHECK(e.problems()[0] ==
          "--set model.n_layer=3: model.n_layer cannot change when resuming (2 -> 3): the "
          "checkpoint holds the parameters of this model (its shapes and layers)");
    CHECK(e.problems()[1].rfind("--set train.seed=5: train.seed cannot change when resuming", 0) == 0);
  }
  // More data-parallel ranks: the global batch stays, gradient accumulation is re-derived.
  rc = resume_config(meta, "ck/step_00000010", {"parallel.dp=2"}, "", 2);
  CHECK(rc.cfg.train.global_batch == 4);
  CHECK(rc.cfg.train.grad_accum == 1);
  CHECK(std::find(rc.changes.begin(), rc.changes.end(), "train.grad_accum: 2 -> 1") != rc.changes.end());
  // A dp the global batch (4) does not split over: the error names the user's --set, not the
  // train.grad_accum=0 the resume adds before it.
  try {
    resume_config(meta, "ck/step_00000010", {"parallel.dp=3"}, "", 3);
    FAIL("no error");
  } catch (const ConfigError& e) {
    INFO(e.what());
    CHECK(e.problems().size() == 1);
    CHECK(e.problems()[0].rfind("--set parallel.dp=3: train.global_batch = 4 is not a multiple of", 0) == 0);
  }
  // Another micro-batch: the same, the count derived again (it had kept the
  // checkpoint's and refused the global batch it no longer made).
  rc = resume_config(meta, "ck/step_00000010", {"train.micro_batch=4", "train.eval_batches=3"}, "", 1);
  CHECK(rc.cfg.train.global_batch == 4);
  CHECK(rc.cfg.train.grad_accum == 1);
  // ... and evaluation, eval_batches micro-batches, reads other samples: said.
  CHECK(std::any_of(rc.changes.begin(), rc.changes.end(), [](const std::string& c) {
    return c.rfind("train.micro_batch: 2 -> 4 (evaluation reads train.eval_batches x train.micro_batch = 12 "
                   "validation samples from here, ", 0) == 0;
  }));
  // Dropout is a rate, not a parameter: it may change.
  rc = resume_config(meta, "ck/step_00000010", {"model.dropout=0.2"}, "", 1);
  CHECK(rc.cfg.model.dropout == doctest::Approx(0.2));
}

TEST_CASE("a resumed run's metrics keep the records up to the checkpoint's step") {
  TempDir dir;
  const fs::path p = dir.path / "metrics.jsonl";
  write_file(p, "{\"step\": 0, \"eval_loss\": 5.5}\n{\"step\": 1, \"loss\": 5}\n{\"step\": 2, \"loss\": 4}\n"
                "{\"step\": 2, \"eval_loss\": 4.5}\n{\"step\": 3, \"loss\": 3}\n");
  CHECK(trim_metrics(p.string(), 2));  // step 2 was evaluated
  CHECK(read_file(p) == "{\"step\": 0, \"eval_loss\": 5.5}\n{\"step\": 1, \"loss\": 5}\n{\"step\": 2, \"loss\": 4}\n"
                        "{\"step\": 2, \"eval_loss\": 4.5}\n");
  CHECK(!trim_metrics(p.string(), 1));  // step 1 was not (a stop there skips its evaluation)
  CHECK(trim_metrics((dir.path / "none.jsonl").string(), 1));  // nothing to complete
}

TEST_CASE("trimming metrics reads each record as JSON: compact or spaced, keys in any order, a torn line dropped") {
  TempDir dir;
  const fs::path p = dir.path / "metrics.jsonl";
  write_file(p, "{\"step\":1,\"loss\":5.0}\n{\"loss\":4.0,\"step\":2}\n{ \"step\" : 3 }\n{\"step\":4,\"lo");
  trim_metrics(p.string(), 1);
  CHECK(read_file(p) == "{\"step\":1,\"loss\":5.0}\n");
}

TEST_CASE("resume config: a checkpoint from before model.vocab_used keeps its loss over the whole table") {
  // GPT-2's tokens in 50304 rows: a new run predicts the 50257 ids (derived
  // and written); a checkpoint whose config predates the key keeps predicting
  // all 50304 (its logged losses and evaluations stay comparable), unless a
  // --set changes it, which a resume allows (no parameter's shape depends on it).
  CheckpointMeta now = meta_of(std::string(R"([model]
type = "gpt"
n_layer = 2
vocab_size = 50304
[data]
train = "t.bin"
val = "v.bin"
tokenizer = "gpt2"
[train]
steps = 10
global_batch = 4
micro_batch = 2
)"));
  CHECK(now.config.find("vocab_used = 50257") != std::string::npos);
  CHECK(resume_config(now, "ck/step_00000010", {}, "", 1).cfg.model.vocab_used == 50257);
  CheckpointMeta old = now;
  const size_t at = old.config.find("vocab_used = 50257\n");
  REQUIRE(at != std::string::npos);
  old.config.erase(at, std::string("vocab_used = 50257\n").size());
  ResumeConfig rc = resume_config(old, "ck/step_00000010", {}, "", 1);
  CHECK(rc.cfg.model.vocab_used == 50304);
  CHECK(rc.changes.empty());
  rc = resume_config(old, "ck/step_00000010", {"model.vocab_used=50257"}, "", 1);
  CHECK(rc.cfg.model.vocab_used == 50257);
  REQUIRE(rc.changes.size() == 1);
  CHECK(rc.changes[0] == "model.vocab_used: 50304 -> 50257");
}
