#include "checkpoint/session.h"

#include <fmt/format.h>

#include "config/config.h"

#ifndef DTRAIN_VERSION
#define DTRAIN_VERSION "unknown"
#endif

namespace dtrain {

namespace {
std::string human_bytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.1f} MB", b / 1e6);
  return fmt::format("{:.1f} kB", b / 1e3);
}
}  // namespace

CheckpointMeta trainer_meta(Trainer& trainer, int64_t step, const Layout& layout) {
  const Config& cfg = trainer.config();
  CheckpointMeta m;
  m.program_version = DTRAIN_VERSION;
  m.model_type = cfg.model.type;
  m.optimizer = cfg.optim.name;
  m.step = step;
  m.optimizer_steps = trainer.optimizer().steps_done();
  m.samples_seen = step * cfg.train.global_batch;
  m.items_seen = step * trainer.items_per_step();
  m.seed = cfg.train.seed;
  m.config = to_toml(cfg);
  m.layout = layout;
  return m;
}

SaveResult save_trainer(Trainer& trainer, int64_t step, Communicator& world, const Layout& layout,
                        Replica replica, const SaveOptions& opts) {
  std::vector<Piece> pieces =
      collect_pieces(trainer.model(), trainer.optimizer(), replica.first_dp, replica.first_tp);
  return save_checkpoint(trainer.config().checkpoint.dir, trainer_meta(trainer, step, layout), pieces,
                         world, opts);
}

CheckpointMeta restore_trainer(Trainer& trainer, const std::string& dir) {
  const CheckpointMeta m = read_meta(dir);
  const Config& cfg = trainer.config();
  std::vector<std::string> problems;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) problems.push_back(fmt::format("checkpoint {}: {}", dir, what));
  };
  expect(m.model_type == cfg.model.type,
         fmt::format("holds a {} model, the config describes a {}", m.model_type, cfg.model.type));
  expect(m.optimizer == cfg.optim.name,
         fmt::format("holds {} state, the config asks for {}", m.optimizer, cfg.optim.name));
  expect(m.seed == cfg.train.seed, fmt::format("was written with seed {}, the config has {}", m.seed,
                                               cfg.train.seed));
  // The data position: step k reads global samples [k G, (k+1) G).
  expect(m.samples_seen == m.step * cfg.train.global_batch,
         fmt::format("has seen {} samples in {} steps, but train.global_batch is {}", m.samples_seen,
                     m.step, cfg.train.global_batch));
  expect(m.items_seen == m.step * trainer.items_per_step(),
         fmt::format("has seen {} items in {} steps, but a step is {} items", m.items_seen, m.step,
                     trainer.items_per_step()));
  expect(m.step <= cfg.train.steps,
         fmt::format("is at step {}, beyond train.steps = {} (raise it with --set train.steps=N)",
                     m.step, cfg.train.steps));
  if (!problems.empty()) throw ConfigError(problems);
  std::vector<Piece> pieces = collect_pieces(trainer.model(), trainer.optimizer());
  load_pieces(dir, pieces);
  trainer.optimizer().set_steps_done(m.optimizer_steps);
  return m;
}

CheckpointSession::CheckpointSession(Trainer& trainer, SessionOptions opts)
    : trainer_(trainer), opts_(std::move(opts)), last_save_time_(std::chrono::steady_clock::now()) {
  DTRAIN_CHECK(opts_.world != nullptr, "a checkpoint session needs the world communicator");
  last_step_ = opts_.start_step > 0 ? opts_.start_step : -1;
}

bool CheckpointSession::should_stop(int64_t done) {
  const double minutes = trainer_.config().checkpoint.every_minutes;
  // Rank 0's clock decides the time-based checkpoint; everyone's signals the stop.
  const bool local_stop = opts_.signals && opts_.signals->poll();
  const bool local_due =
      opts_.world->rank() == 0 && minutes > 0 &&
      std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_time_).count() >=
          minutes * 60.0;
  Tensor flags = Tensor::zeros(Shape{2}, DType::f32);
  flags.data<float>()[0] = local_stop ? 1.0f : 0.0f;
  flags.data<float>()[1] = local_due ? 1.0f : 0.0f;
  all_reduce(*opts_.world, flags, ReduceOp::max);
  time_due_ = flags.data<float>()[1] > 0;
  const bool stop = flags.data<float>()[0] > 0;
  if (stop && stop_reason_.empty()) {
    stop_reason_ = local_stop ? opts_.signals->received() : "a signal on another rank";
    if (opts_.log)
      opts_.log(fmt::format("{} received: stopping after step {} with a checkpoint", stop_reason_, done));
  }
  return stop;
}

void CheckpointSession::after_step(int64_t done, bool stopping) {
  const Config& cfg = trainer_.config();
  const CheckpointConfig& c = cfg.checkpoint;
  const bool due = stopping || time_due_ || (c.every > 0 && done % c.every == 0) ||
                   (c.at_end && done == cfg.train.steps);
  if (!due || done == last_step_) return;
  SaveOptions so;
  so.keep = c.keep;
  so.on_file_op = opts_.on_file_op;
  const SaveResult r = save_trainer(trainer_, done, *opts_.world, opts_.layout, opts_.replica, so);
  last_save_time_ = std::chrono::steady_clock::now();
  time_due_ = false;
  last_dir_ = r.dir;
  last_step_ = done;
  if (opts_.log) {
    std::string msg = fmt::format("checkpoint step {} -> {} ({} in {:.2f} s)", done, r.dir,
                                  human_bytes(static_cast<double>(r.bytes)), r.seconds);
    if (!r.pruned.empty()) msg += fmt::format("; deleted {}", fmt::join(r.pruned, ", "));
    opts_.log(msg);
  }
}

}  // namespace dtrain
