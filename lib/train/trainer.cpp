#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "kernels/cpu/gemm.h"

namespace dtrain {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto total = static_cast<int64_t>(s + 0.5);
  if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, total % 3600 / 60);
  if (total >= 60) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}s", total);
}

std::string format_rate(double r) {
  if (r >= 1e6) return fmt::format("{:.2f}M", r / 1e6);
  if (r >= 1e4) return fmt::format("{:.1f}k", r / 1e3);
  return fmt::format("{:.0f}", r);
}

DType precision_dtype(const std::string& p) {
  if (p == "fp32") return DType::f32;
  throw ConfigError(fmt::format("train.precision: '{}' is not available on the CPU backend", p));
}

}  // namespace

Trainer::Trainer(const Config& cfg, std::function<void(const std::string&)> log)
    : cfg_(cfg), log_(std::move(log)) {
  cpu::set_num_threads(static_cast<int>(cfg_.train.threads));
  seq_len_ = cfg_.model.type == "gpt"
                 ? (cfg_.train.seq_len > 0 ? cfg_.train.seq_len : cfg_.model.context_length)
                 : 0;
  data_ = open_data(cfg_, seq_len_);
  model_ = build_model(cfg_.model, seq_len_, precision_dtype(cfg_.train.precision), Device::cpu(),
                       static_cast<uint64_t>(cfg_.train.seed));
  model_->plan(cfg_.train.micro_batch);
  opt_ = make_optimizer(cfg_.optim, model_->params);
  x_ = Tensor::empty(model_->input_shape(cfg_.train.micro_batch), model_->input_dtype());
  y_ = Tensor::empty(model_->target_shape(cfg_.train.micro_batch), DType::i32);
}

Trainer::~Trainer() = default;

double Trainer::train_step(int64_t step, const RunOptions& opts) {
  const int64_t micro = cfg_.train.micro_batch, accum = cfg_.train.grad_accum;
  model_->params.zero_grads();
  double loss_sum = 0;
  Ctx ctx;
  ctx.training = true;
  ctx.seed = static_cast<uint64_t>(cfg_.train.seed);
  ctx.step = step;
  for (int64_t k = 0; k < accum; ++k) {
    // Global sample addressing: this step's global batch is samples
    // [step * G, (step + 1) * G); micro-batch k of this (only) rank reads its slice.
    ctx.sample_offset = step * cfg_.train.global_batch + k * micro;
    data_.train->fill(ctx.sample_offset, micro, x_, y_);
    LossStats st = model_->forward(x_, y_, ctx);
    model_->backward(1.0 / static_cast<double>(accum), ctx);
    loss_sum += st.loss;
  }
  double loss = loss_sum / static_cast<double>(accum);
  if (opts.inject_nan_at_step == step + 1) loss = std::nan("");
  last_grad_norm_ = std::isfinite(loss) ? grad_norm(model_->params) : 0.0;
  if (!std::isfinite(loss) || !std::isfinite(last_grad_norm_)) {
    const std::string what = !std::isfinite(loss)
                                 ? fmt::format("training loss became {}", loss)
                                 : fmt::format("gradient norm became {}", last_grad_norm_);
    if (!cfg_.train.skip_nonfinite)
      throw RuntimeError(fmt::format("{} at step {}; stopping before the update (no checkpoint is "
                                     "written with it; train.skip_nonfinite = true skips such steps)",
                                     what, step + 1));
    log_(fmt::format("step {}: {}; update skipped (train.skip_nonfinite)", step + 1, what));
    return loss;
  }
  opt_->step(learning_rate(cfg_.optim, cfg_.train.steps, step),
             clip_scale(last_grad_norm_, cfg_.optim.grad_clip));
  return loss;
}

EvalResult Trainer::evaluate() {
  const int64_t micro = cfg_.train.micro_batch;
  const int64_t total = data_.val->size();
  int64_t batches = (total + micro - 1) / micro;
  if (cfg_.train.eval_batches > 0) batches = std::min(batches, cfg_.train.eval_batches);
  Ctx ctx;
  ctx.training = false;
  ctx.seed = static_cast<uint64_t>(cfg_.train.seed);
  double loss_sum = 0;
  int64_t items = 0, correct = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t first = b * micro, n = std::min(micro, total - first);
    Tensor x = x_.narrow0(0, n), y = y_.narrow0(0, n);
    data_.val->fill(first, n, x, y);
    LossStats st = model_->forward(x, y, ctx);
    loss_sum += st.loss * static_cast<double>(st.count);
    items += st.count;
    correct += st.correct;
  }
  EvalResult r;
  r.items = items;
  r.loss = items ? loss_sum / static_cast<double>(items) : 0.0;
  r.accuracy = items ? static_cast<double>(correct) / static_cast<double>(items) : 0.0;
  return r;
}

TrainSummary Trainer::run(const RunOptions& opts) {
  namespace fs = std::filesystem;
  const auto& t = cfg_.train;
  const bool classifier = cfg_.model.type == "cnn";
  const std::string out = cfg_.log.out_dir;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw RuntimeError(fmt::format("cannot create output directory '{}': {}", out, ec.message()));
  {
    std::ofstream f(fs::path(out) / "config.toml");
    f << to_toml(cfg_);
    if (!f) throw RuntimeError(fmt::format("cannot write '{}/config.toml'", out));
  }
  MetricsWriter metrics((fs::path(out) / "metrics.jsonl").string(), opts.start_step > 0);

  const int64_t items_per_step = t.global_batch * model_->items_per_sample();
  const char* unit = classifier ? "img/s" : "tok/s";
  const Cost cost = model_->cost(t.micro_batch);
  log_(fmt::format("model {}: {:.2f}M parameters, {:.2f} GFLOP per step; batch {} = {} x {} "
                   "micro-batches; {} threads; output {}",
                   cfg_.model.type, static_cast<double>(model_->params.num_trainable()) / 1e6,
                   (cost.fwd_flops + cost.bwd_flops) * static_cast<double>(t.grad_accum) / 1e9,
                   t.global_batch, t.micro_batch, t.grad_accum, cpu::num_threads(), out));

  auto report_eval = [&](int64_t step, const EvalResult& e) {
    if (classifier) {
      metrics.write({{"step", step}, {"eval_loss", e.loss}, {"eval_accuracy", e.accuracy}});
      log_(fmt::format("eval  step {:>6}/{} | loss {:.4f} | accuracy {:.2f}%", step, t.steps, e.loss,
                       100.0 * e.accuracy));
    } else {
      metrics.write({{"step", step}, {"eval_loss", e.loss}});
      log_(fmt::format("eval  step {:>6}/{} | loss {:.4f}", step, t.steps, e.loss));
    }
  };

  TrainSummary summary;
  if (opts.start_step == 0) {
    summary.first_eval = evaluate();
    report_eval(0, summary.first_eval);
  }

  double train_seconds = 0, window_seconds = 0;
  int64_t window_steps = 0, step = opts.start_step;
  for (; step < t.steps; ++step) {
    const auto t0 = Clock::now();
    const double lr = learning_rate(cfg_.optim, t.steps, step);
    const double loss = train_step(step, opts);
    const double dt = seconds_since(t0);
    train_seconds += dt;
    window_seconds += dt;
    ++window_steps;
    const int64_t done = step + 1;
    if (std::isfinite(loss) && std::isfinite(last_grad_norm_)) {
      summary.last_loss = loss;
      metrics.write({{"step", done}, {"loss", loss}, {"lr", lr}, {"grad_norm", last_grad_norm_},
                     {"step_seconds", dt}});
    } else {
      ++summary.skipped;
      metrics.write({{"step", done}, {"skipped", std::string("non-finite loss or gradient norm")},
                     {"step_seconds", dt}});
    }
    const bool stopping = opts.hooks && opts.hooks->should_stop(done);
    if (done % cfg_.log.every == 0 || done == t.steps) {
      const double rate = static_cast<double>(items_per_step * window_steps) / window_seconds;
      const double eta = train_seconds / static_cast<double>(done - opts.start_step) *
                         static_cast<double>(t.steps - done);
      log_(fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.3e} | norm {:.3f} | {} {} | eta {}", done,
                       t.steps, loss, lr, last_grad_norm_, format_rate(rate), unit,
                       format_duration(eta)));
      window_seconds = 0;
      window_steps = 0;
    }
    const bool last = done == t.steps;
    if (!stopping && (last || (t.eval_every > 0 && done % t.eval_every == 0))) {
      EvalResult e = evaluate();
      report_eval(done, e);
      if (last) summary.last_eval = e;
    }
    if (opts.hooks) opts.hooks->after_step(done, stopping);
    if (stopping) {
      summary.stopped = done < t.steps;
      ++step;
      break;
    }
  }
  summary.steps = step;
  summary.seconds = train_seconds;
  const int64_t ran = step - opts.start_step;
  summary.items_per_second =
      train_seconds > 0 ? static_cast<double>(items_per_step * ran) / train_seconds : 0.0;
  log_(fmt::format("{}: {} steps in {}, {} {} on average", summary.stopped ? "stopped" : "done", ran,
                   format_duration(train_seconds), format_rate(summary.items_per_second), unit));
  return summary;
}

}  // namespace dtrain
