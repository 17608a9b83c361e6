// The setup `dtrain run`, `resume` and `profile` share (training.h).
#include "training.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "checkpoint/hf.h"
#include "checkpoint/session.h"
#include "checkpoint/store.h"
#include "config/footprint.h"
#include "core/device.h"
#include "data/check.h"
#include "data/token_file.h"
#include "data/tokenizer.h"
#include "dist/mesh_groups.h"
#include "train/data_source.h"
#include "core/host_memory.h"
#include "dist/mpi_runtime.h"
#include "ops/runtime.h"
#include "parallel/auto_layout.h"

namespace dtrain_cli {

namespace {

// A config whose ranks on this machine would need more than its memory is
// refused before the model is built: the cost model's memory for the
// config's layout (validate's limit is an absolute one, the same on every
// machine), on parallel/auto_layout.h's check_hardware.
// sharing_gpu: the ranks of the node on this rank's GPU (itself included).
void check_fits_memory(const dtrain::Config& cfg, int ranks_here, int local_rank, int sharing_gpu) {
  if (cfg.train.device == "cuda") {  // the rank's GPU holds what its ranks need
    std::string why;
    const int gpus = dtrain::gpu::device_count(&why);
    const dtrain::gpu::DeviceInfo d = dtrain::gpu::device_info(local_rank % gpus);
    const std::string problem = dtrain::fit_problem(
        cfg, dtrain::check_hardware(cfg, [&] { return d.name; }), std::max(1, sharing_gpu),
        fmt::format("cuda:{} ({}{})", local_rank % gpus, d.name,
                    sharing_gpu > 1 ? fmt::format(", shared by {} ranks of this node", sharing_gpu) : ""),
        static_cast<double>(d.free_bytes), static_cast<double>(d.total_bytes));
    if (!problem.empty()) throw dtrain::ConfigError(problem);
    return;
  }
  // The RAM, or a container's or Slurm job's cgroup limit where it is less.
  const dtrain::HostMemory mem = dtrain::host_memory();
  if (mem.bytes <= 0) return;
  const std::string where =
      mem.limit_file.empty() ? "this machine" : fmt::format("this machine (its cgroup limit: {})", mem.limit_file);
  const std::string problem =
      dtrain::fit_problem(cfg, dtrain::check_hardware(cfg), std::max(1, ranks_here), where, mem.bytes, mem.bytes);
  if (!problem.empty()) throw dtrain::ConfigError(problem);
}

}  // namespace

TestFaults test_faults() {
  TestFaults f;
  if (const char* k = std::getenv("DTRAIN_TEST_KILL_AT_FILE_OP")) {
    auto count = std::make_shared<int64_t>(0);
    const int64_t at = std::atoll(k);
    f.on_file_op = [count, at](const std::string& what) {
      ++*count;
      if (at == 0) eprint("dtrain: test: file operation {}: {}\n", *count, what);
      if (*count == at) {
        eprint("dtrain: test: SIGKILL after file operation {}: {}\n", at, what);
        std::raise(SIGKILL);
      }
    };
  }
  if (const char* k = std::getenv("DTRAIN_TEST_FAIL_AT_FILE_OP")) {
    auto count = std::make_shared<int64_t>(0);
    const int64_t at = std::atoll(k);
    f.on_file_op = [count, at](const std::string& what) {
      if (++*count == at) throw dtrain::RuntimeError("test: file operation " + std::to_string(at) + " fails: " + what);
    };
  }
  if (const char* k = std::getenv("DTRAIN_TEST_NAN_AT_STEP")) f.nan_at_step = std::atoll(k);
  return f;
}

std::vector<std::string> output_problems(const dtrain::Config& cfg) {
  std::vector<std::string> out = dtrain::store::write_path_problems(cfg.log.out_dir, cfg.checkpoint.dir);
  for (auto [key, dir] : {std::pair{"log.out_dir", &cfg.log.out_dir}, std::pair{"checkpoint.dir", &cfg.checkpoint.dir}}) {
    std::filesystem::path p = std::filesystem::absolute(*dir);
    std::error_code ec;
    // Up to the nearest part that exists. A part that cannot even be looked at (a name
    // longer than the file system allows, a directory we may not search) is said here:
    // it used to pass as "missing" and end the run later in a filesystem exception.
    while (!std::filesystem::exists(p, ec) && !ec && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
    if (ec)
      out.push_back(fmt::format("{}: '{}' cannot be created: '{}': {}", key, *dir, p.string(), ec.message()));
    else if (!std::filesystem::is_directory(p, ec))
      out.push_back(fmt::format("{}: '{}' cannot be created: '{}' is not a directory", key, *dir, p.string()));
    else if (access(p.c_str(), W_OK | X_OK) != 0)
      out.push_back(fmt::format("{}: '{}' cannot be written: '{}' is not writable", key, *dir, p.string()));
  }
  return out;
}

std::vector<std::string> input_problems(const dtrain::Config& cfg) {
  std::vector<std::string> out = dtrain::data_problems(cfg);
  try {
    (void)dtrain::checkpoint_keys(cfg);
  } catch (const dtrain::ConfigError& e) {
    for (const std::string& p : e.problems()) out.push_back(p);
  }
  for (std::string& p : dtrain::init_from_problems(cfg.model)) out.push_back(std::move(p));
  return out;
}

std::string tokenizer_note(const dtrain::Config& cfg) {
  if (cfg.model.family() != dtrain::ModelFamily::gpt) return "";
  std::error_code ec;
  if (cfg.data.tokenizer == "hf") {
    if (!std::filesystem::is_regular_file(std::filesystem::path(cfg.data.tokenizer_dir) / "tokenizer.json", ec))
      return fmt::format("data.tokenizer_dir: '{}' holds no tokenizer.json (data.tokenizer = \"hf\"); training "
                         "reads only token ids, but `dtrain generate` and `dtrain export` will need --tokenizer-dir",
                         cfg.data.tokenizer_dir);
    // Read it (under a second for LLaMA 3's), so that a file generate and
    // export could not read, or ids the model cannot hold, are said now.
    try {
      const int64_t ids = dtrain::hf_tokenizer(cfg.data.tokenizer_dir)->vocab_size();
      if (ids > cfg.model.vocab_size)
        return fmt::format("data.tokenizer_dir's tokenizer has {} ids but model.vocab_size = {}: the ids from {} on "
                           "can be neither trained nor generated",
                           ids, cfg.model.vocab_size, cfg.model.vocab_size);
    } catch (const dtrain::InputError& e) {
      return fmt::format("data.tokenizer_dir: {}; training reads only token ids, but `dtrain generate` and `dtrain "
                         "export` will need --tokenizer-dir",
                         e.what());
    }
    return "";
  }
  if (cfg.data.tokenizer != "gpt2") return "";
  const dtrain::Gpt2TokenizerFiles f = dtrain::gpt2_tokenizer_files(cfg.data.tokenizer_dir);
  if (std::filesystem::is_regular_file(f.vocab, ec) && std::filesystem::is_regular_file(f.merges, ec)) return "";
  return fmt::format("data.tokenizer_dir: '{}' holds no GPT-2 tokenizer (encoder.json and vocab.bpe, or vocab.json "
                     "and merges.txt); training reads only token ids, but `dtrain generate` and `dtrain export` "
                     "will need --tokenizer-dir",
                     cfg.data.tokenizer_dir);
}

std::string earlier_run_problem(const dtrain::Config& cfg) {
  std::error_code ec;
  if (!std::filesystem::is_directory(cfg.checkpoint.dir, ec)) return "";
  const auto found = dtrain::store::list_complete(cfg.checkpoint.dir);
  if (found.empty()) return "";
  const std::string run = dtrain::store::read_run(cfg.checkpoint.dir);
  return fmt::format("checkpoint.dir: '{}' already holds {} checkpoint{} of {} (newest {}), which a new run's saves "
                     "would prune: continue it with `dtrain resume {}`, or give this run another --out (or "
                     "checkpoint.dir), or remove them",
                     cfg.checkpoint.dir, found.size(), found.size() == 1 ? "" : "s",
                     run.empty() ? "an earlier run" : "run " + run, found.front().dir.filename().string(),
                     cfg.checkpoint.dir);
}

GraceHooks::GraceHooks(dtrain::CheckpointSession& inner, dtrain::Watchdog& dog, int64_t start_step,
                       std::string checkpoint_dir)
    : inner_(inner), dog_(dog), checkpoint_dir_(std::move(checkpoint_dir)) {
  dog_.set_grace(60);
  note_step(start_step);
}

GraceHooks::~GraceHooks() { dog_.set_step("", ""); }

void GraceHooks::note_step(int64_t done) {
  const std::string newest = inner_.newest_dir();
  // checkpoint.async: one being written in the background may complete while this rank is blocked.
  const int64_t writing = inner_.writing_step();
  const std::string or_newer =
      writing > 0 ? fmt::format(", or step {}'s if its background write completed", writing) : std::string();
  std::string recovery;
  if (!newest.empty())
    recovery = inner_.recovery(or_newer);
  else if (writing > 0)
    recovery = fmt::format("step {}'s checkpoint was being written in the background: if it completed, continue "
                           "with: dtrain resume {}",
                           writing, checkpoint_dir_);
  else
    recovery = "there is no checkpoint yet";
  dog_.set_step(fmt::format("step {}", done + 1), recovery);
}

void GraceHooks::after_step(int64_t done, bool stopping) {
  inner_.after_step(done, stopping);
  note_step(done);
  const auto now = std::chrono::steady_clock::now();
  longest_ = std::max(longest_, std::chrono::duration<double>(now - last_).count());
  last_ = now;
  dog_.set_grace(std::max(5.0, 3 * longest_));
}

TrainingSetup::TrainingSetup(Context& ctx, bool verbose) : ctx_(ctx), verbose_(verbose) {
  if (verbose) comm.trace = dtrain::trace_to_stderr();
  // What a wait is blocked on, for the watchdog's message when a stop cannot
  // reach the next step boundary (a stopped or stuck peer).
  if (ctx.watchdog) comm.on_blocked = [dog = ctx.watchdog](const std::string& what) { dog->set_blocked_on(what); };
  options.inject_nan_at_step = test_faults().nan_at_step;
  options.local_rank = ctx.mpi ? ctx.mpi->local_rank() : 0;
  options.cores = ctx.mpi ? ctx.mpi->cores_for_rank() : 0;
  if (verbose) options.trace = [](const std::string& line) { eprint("dtrain: {}\n", line); };
}

std::function<void(const std::string&)> TrainingSetup::log() const {
  return [rank = ctx_.world_rank](const std::string& s) {
    if (rank == 0) print_line(s);
  };
}

namespace {

// What every rank must agree on: the config (to_toml, without its comments:
// a copy of the file under another name is the same config), the directories
// it writes to as absolute paths (a relative --out from ranks started in
// different directories: each rank's part of a checkpoint went elsewhere and
// the save failed), and the sizes of the data files all ranks read (a
// node's other copy of the data: the replicas trained on different data).
std::string agreed_text(const dtrain::Config& cfg) {
  std::string text = dtrain::to_toml(cfg);
  std::error_code ec;
  text += "\n[resolved]\n";
  text += fmt::format("log.out_dir = \"{}\"\n", std::filesystem::absolute(cfg.log.out_dir, ec).lexically_normal().string());
  text += fmt::format("checkpoint.dir = \"{}\"\n",
                      std::filesystem::absolute(cfg.checkpoint.dir, ec).lexically_normal().string());
  std::vector<std::pair<std::string, std::string>> files;
  if (cfg.model.token_model()) {
    if (!dtrain::per_replica_data(cfg))
      for (const std::string& f : cfg.data.train) files.emplace_back("data.train", f);
    files.emplace_back("data.val", cfg.data.val);
  } else {
    files = {{"data.train_images", cfg.data.train_images}, {"data.train_labels", cfg.data.train_labels},
             {"data.val_images", cfg.data.val_images}, {"data.val_labels", cfg.data.val_labels}};
  }
  for (const auto& [key, pattern] : files) {
    std::vector<std::string> paths = {pattern};
    if (cfg.model.token_model()) {
      try {  // every file of a pattern ("shards_*.bin")
        paths = dtrain::token_file_paths(pattern);
      } catch (const dtrain::InputError&) {  // matches nothing here: data_problems says so
      }
    }
    for (const std::string& path : paths)
      if (const auto size = std::filesystem::file_size(path, ec); !ec)
        text += fmt::format("{} ('{}') bytes = {}\n", key, path, size);
  }
  return text;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The agreed text without to_toml's comment lines: a copy of the config under
// another name is the same config.
std::string without_comments(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line))
    if (line.empty() || line.front() != '#') out += line + "\n";
  return out;
}

// The first line of two configs' TOML texts that differs, as "key = value"
// with its table ("model.n_embd = 64"), or "" if none does.
std::pair<std::string, std::string> first_difference(const std::string& mine, const std::string& theirs) {
  std::istringstream a(mine), b(theirs);
  std::string la, lb, table_a, table_b;
  auto qualified = [](const std::string& table, const std::string& line) {
    return line.empty() ? std::string("(nothing)") : table.empty() || table == "resolved" ? line : table + "." + line;
  };
  for (;;) {
    const bool more_a = static_cast<bool>(std::getline(a, la)), more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) return {};
    if (!more_a) la.clear();
    if (!more_b) lb.clear();
    if (la != lb) {
      const bool header = (!la.empty() && la.front() == '[') || (!lb.empty() && lb.front() == '[');
      if (header) return {la.empty() ? "(nothing)" : la, lb.empty() ? "(nothing)" : lb};
      return {qualified(table_a, la), qualified(table_b, lb)};
    }
    if (!la.empty() && la.front() == '[') table_a = table_b = la.substr(1, la.find(']') - 1);
  }
}

}  // namespace

void TrainingSetup::agree(const std::function<std::string()>& local) {
  std::exception_ptr failure;
  std::string text;
  try {
    text = without_comments(local());
  } catch (const dtrain::Error&) {
    if (!ctx_.mpi || ctx_.world_size == 1) throw;
    failure = std::current_exception();
  }
  if (!ctx_.mpi || ctx_.world_size == 1) return;
  const int n = ctx_.world_size;
  // Each rank's outcome: failed, and its config's digest (0: none compared).
  struct Outcome {
    uint64_t failed, digest;
  } mine{failure ? 1u : 0u, text.empty() ? 0 : fnv1a(text)};
  std::vector<Outcome> all(n);
  MPI_Allgather(&mine, 2, MPI_UINT64_T, all.data(), 2, MPI_UINT64_T, MPI_COMM_WORLD);
  int first_failed = -1;
  for (int r = 0; r < n && first_failed < 0; ++r)
    if (all[r].failed) first_failed = r;
  if (first_failed >= 0) {
    // Where every rank failed, rank 0 says it and none aborts: the others
    // leave only after rank 0 has said it (main: failure_barrier), however
    // slow rank 0 is to get there.
    ctx_.failure_barrier = std::all_of(all.begin(), all.end(), [](const Outcome& o) { return o.failed != 0; });
    if (ctx_.world_rank == first_failed) {
      // Where every rank failed (a bad config), rank 0 says it for all; else
      // the failure is this rank's own: tagged with its rank, and it aborts the job.
      ctx_.shared_failure = std::all_of(all.begin(), all.end(), [](const Outcome& o) { return o.failed != 0; });
      std::rethrow_exception(failure);
    }
    if (first_failed > 0 || !failure) ctx_.failure_said_elsewhere = true;
    if (failure) std::rethrow_exception(failure);  // said by the first rank that failed
    throw dtrain::ConfigError(fmt::format("rank {} failed its setup", first_failed));
  }
  int first_differing = -1;
  for (int r = 1; r < n && first_differing < 0; ++r)
    if (all[r].digest != all[0].digest) first_differing = r;
  if (first_differing < 0) return;
  // Rank 0's text to the rank that says where it differs.
  uint64_t length = ctx_.world_rank == 0 ? text.size() : 0;
  MPI_Bcast(&length, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  std::string rank0 = ctx_.world_rank == 0 ? text : std::string(length, '\0');
  MPI_Bcast(rank0.data(), static_cast<int>(length), MPI_CHAR, 0, MPI_COMM_WORLD);
  if (ctx_.world_rank != first_differing) {
    ctx_.failure_said_elsewhere = true;
    throw dtrain::ConfigError(fmt::format("rank {}'s config differs from rank 0's", first_differing));
  }
  ctx_.shared_failure = false;
  const auto [here, there] = first_difference(text, rank0);
  throw dtrain::ConfigError(fmt::format(
      "this rank's config differs from rank 0's: {} here, {} on rank 0 (every rank must be given the same config, "
      "--set options, working directory and data)",
      here, there));
}

dtrain::Groups TrainingSetup::groups_for(const dtrain::Config& cfg) {
  const dtrain::MeshLayout want{static_cast<int>(cfg.parallel.dp), static_cast<int>(cfg.parallel.tp),
                                static_cast<int>(cfg.parallel.pp)};
  comm.timeout_seconds = cfg.parallel.timeout;
  if (cfg.train.device == "cuda") {
    ctx_.start_mpi();  // the device groups are built on MPI's (NCCL's id, the host-staged path)
    device_groups_.reset();
    mesh_.reset();
    dtrain::DeviceGroupsOptions o{.device_comm = cfg.parallel.device_comm, .timeout_s = cfg.parallel.timeout,
                                  .mpi = comm, .log = log()};
    device_groups_ = std::make_unique<dtrain::DeviceGroups>(
        want, options.local_rank % std::max(1, dtrain::gpu::device_count(nullptr)), o);
    options.comm_check = [dg = device_groups_.get()] { dg->check(); };
    if (verbose_)
      eprint("dtrain: {}{}; {}\n", ctx_.rank_tag, ctx_.mpi->describe(), device_groups_->mesh().describe());
    return device_groups_->groups();
  }
  if (!ctx_.mpi) {  // one process, no launcher: load_config checked that the layout is 1 x 1 x 1
    if (!self_) self_ = std::make_unique<dtrain::SelfGroups>();
    if (verbose_) eprint("dtrain: one process, no launcher: MPI not started\n");
    return self_->groups();
  }
  if (!mesh_ || mesh_->layout().dp != want.dp || mesh_->layout().tp != want.tp || mesh_->layout().pp != want.pp) {
    mesh_.reset();
    mesh_ = std::make_unique<dtrain::Mesh>(want, comm);
    if (verbose_) eprint("dtrain: {}{}; {}\n", ctx_.rank_tag, ctx_.mpi->describe(), mesh_->describe());
  }
  return dtrain::mesh_groups(*mesh_);
}

void TrainingSetup::lock_dirs(const dtrain::Config& cfg) {
  std::string problem;
  if (ctx_.world_rank == 0) {
    try {
      // The checkpoint directory too where it is not inside the output directory (whose
      // lock covers the default one, which a run that writes no checkpoint never creates).
      const auto out = std::filesystem::weakly_canonical(cfg.log.out_dir);
      const auto ck = std::filesystem::weakly_canonical(cfg.checkpoint.dir);
      const bool ck_inside = std::mismatch(out.begin(), out.end(), ck.begin(), ck.end()).first == out.end();
      std::vector<std::string> dirs = {cfg.log.out_dir};
      if (!ck_inside) dirs.push_back(cfg.checkpoint.dir);
      for (const std::string& dir : dirs) {
        const bool held = std::any_of(locks_.begin(), locks_.end(), [&](const dtrain::RunLock& l) {
          return std::filesystem::weakly_canonical(l.dir()) == std::filesystem::weakly_canonical(dir);
        });
        if (!held) locks_.emplace_back(dir, dtrain::dir_mode(cfg));
      }
    } catch (const dtrain::Error& e) {
      problem = e.what();
    } catch (const std::filesystem::filesystem_error& e) {  // output_problems catches those it can foresee
      problem = fmt::format("cannot lock the run's directories (log.out_dir '{}', checkpoint.dir '{}'): {}",
                            cfg.log.out_dir, cfg.checkpoint.dir, e.code().message());
    }
  }
  int failed = problem.empty() ? 0 : 1;
  if (ctx_.world_size > 1) MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) throw dtrain::ConfigError(problem.empty() ? "rank 0 could not lock the run's directories" : problem);
}

std::unique_ptr<dtrain::Trainer> TrainingSetup::make_trainer(const dtrain::Config& cfg, bool new_run,
                                                             bool keep_earlier) {
  check_before_trainer(cfg, /*init_from=*/new_run, /*writes=*/true);  // a new run reads model.init_from
  lock_dirs(cfg);
  if (new_run) {  // rank 0 looks (as it holds the locks); every rank learns the outcome
    const std::string earlier = ctx_.world_rank == 0 ? earlier_run_problem(cfg) : "";
    int found = earlier.empty() ? 0 : 1;
    if (ctx_.world_size > 1) MPI_Allreduce(MPI_IN_PLACE, &found, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (found)
      throw dtrain::ConfigError(earlier.empty() ? "rank 0 found checkpoints of an earlier run in checkpoint.dir" : earlier);
  }
  // An earlier run that wrote no checkpoint (stopped before its first, or
  // saving elsewhere) keeps its metrics and config beside the new ones.
  if ((new_run || keep_earlier) && ctx_.world_rank == 0)
    if (const std::string kept = dtrain::store::keep_earlier_output(cfg.log.out_dir); !kept.empty())
      eprint("dtrain: warning: {}\n", printable(kept));
  const dtrain::Groups groups = groups_for(cfg);
  dtrain::TrainerOptions o = options;
  o.values_loaded = !new_run;  // a resume's checkpoint sets every parameter
  return std::make_unique<dtrain::Trainer>(cfg, groups, print_line, o);
}

std::unique_ptr<dtrain::Trainer> TrainingSetup::make_eval_trainer(const dtrain::Config& cfg,
                                                                  std::function<void(const std::string&)> log,
                                                                  bool init_from) {
  check_before_trainer(cfg, init_from, /*writes=*/false);
  const dtrain::Groups groups = groups_for(cfg);
  dtrain::TrainerOptions o = options;
  o.values_loaded = true;
  return std::make_unique<dtrain::Trainer>(cfg, groups, std::move(log), o);
}

void TrainingSetup::check_before_trainer(const dtrain::Config& cfg, bool init_from, bool writes) {
  // What each rank checks on its own node, before any rank makes a directory
  // or a group; then every rank learns that all passed with the same config.
  const int on_node = ctx_.mpi ? ctx_.mpi->ranks_on_node() : 1;  // collective: not among the checks one rank may leave
  // The ranks on this rank's GPU, by its bus id (ranks given one device each,
  // CUDA_VISIBLE_DEVICES per rank, all see a cuda:0 of their own): collective too.
  int sharing_gpu = 1;
  if (cfg.train.device == "cuda" && ctx_.mpi) {
    std::string bus;  // "" where there is no GPU (the check below says so)
    try {
      std::string why;
      if (const int gpus = dtrain::gpu::device_count(&why); gpus > 0)
        bus = dtrain::gpu::device_info(options.local_rank % gpus).bus_id;
    } catch (const dtrain::Error&) {
    }
    sharing_gpu = ctx_.mpi->ranks_on_node_with(bus);
  }
  agree([&] {
    // The device before anything else: no GPU is one line, exit 2.
    if (std::string why = dtrain::ops::device_unavailable(cfg.train.device); !why.empty())
      throw dtrain::ConfigError(why);
    check_fits_memory(cfg, on_node, options.local_rank, sharing_gpu);
    if (auto problems = writes ? output_problems(cfg) : std::vector<std::string>{}; !problems.empty())
      throw dtrain::ConfigError(problems);
    // The data files (named by their keys), the checkpoint key files and a new
    // run's model.init_from (a resume does not read it again). Per-replica
    // training files stay on their replicas' sites: each rank opens its own
    // with the trainer (which agrees on them); the validation file here.
    std::vector<std::string> problems;
    if (dtrain::per_replica_data(cfg) && ctx_.world_size > 1) {
      dtrain::Config val_only = cfg;
      val_only.data.train.clear();
      problems = dtrain::data_problems(val_only);
    } else {
      problems = dtrain::data_problems(cfg);
    }
    try {
      (void)dtrain::checkpoint_keys(cfg);
    } catch (const dtrain::ConfigError& e) {
      for (const std::string& p : e.problems()) problems.push_back(p);
    }
    if (init_from)
      for (std::string& p : dtrain::init_from_problems(cfg.model)) problems.push_back(std::move(p));
    if (!problems.empty()) throw dtrain::ConfigError(problems);
    return agreed_text(cfg);
  });
}

}  // namespace dtrain_cli
