// ZeRO-1/2/3 sharding (see zero.h for the design, why ZeRO-2 scatters every
// micro-batch and how ZeRO-3 gathers each layer's parameters).
#include "train/zero.h"

#include <algorithm>
#include <chrono>

#include "ops/ops.h"

namespace dtrain {

namespace {
constexpr int64_t kShardAlign = 16;  // shard boundaries: multiples of 16 elements
}

ZeroSharding::ZeroSharding(int stage, std::vector<Model*> slots, Communicator& dp, Communicator* embed,
                           double bucket_mb, int broken, bool overlap)
    : stage_(stage), slots_(std::move(slots)), ps_(slots_[0]->params), dp_(dp), embed_(embed),
      me_(dp.rank()), broken_(broken), overlap_(overlap) {
  DTRAIN_CHECK(stage_ >= 1 && stage_ <= 3, "ZeRO stage {}", stage_);
  const Exec& ex = ps_.exec();
  const int64_t n = ps_.flat_numel(), d = dp_.size();
  const int64_t per = (n + d * kShardAlign - 1) / (d * kShardAlign) * kShardAlign;
  for (int64_t r = 0; r < d; ++r) {
    starts_.push_back(std::min(n, r * per));
    counts_.push_back(std::clamp<int64_t>(n - r * per, 0, per));
  }
  range_ = FlatRange{starts_[me_], starts_[me_] + counts_[me_]};
  const DType gt = ps_.values().dtype();  // gradients: the master dtype
  shard_ = Tensor::zeros(Shape{counts_[me_]}, gt, ex.device);
  scalar_ = Tensor::zeros(Shape{1}, DType::f64);
  // ZeRO-1/2 under mixed precision: the fp32 masters of this rank's range,
  // which the optimizer updates, and its range of the whole bf16 copy, which
  // it writes (shard_params then frees the full masters).
  if (stage_ < 3 && ps_.mixed()) {
    const int64_t count = range_.end - range_.begin;
    master_ = Tensor::zeros(Shape{count}, gt, ex.device);
    ops::copy(ex, ps_.values().flat_range(range_.begin, count), master_);
    compute_shard_ = ps_.compute_values().flat_range(range_.begin, count);
  }

  if (stage_ == 1) {
    const auto per_bucket = std::max<int64_t>(
        1024, static_cast<int64_t>(bucket_mb * 1024 * 1024 / static_cast<double>(dtype_size(gt))));
    std::vector<int64_t> b{n};  // from the back, as GradReducer
    while (b.back() > 0) b.push_back(std::max<int64_t>(0, b.back() - per_bucket));
    std::reverse(b.begin(), b.end());
    bounds_ = b;
    next_ = buckets();
    return;
  }

  // ZeRO-2 and 3: each top-level layer's windowed gradient range; tied parameters' gradients resident.
  Model& m = *slots_[0];
  const auto& all = ps_.all();
  DTRAIN_CHECK(m.first_param_of(m.layers.size()) == all.size() || all.empty(),
               "ZeRO-2 needs the layers' parameter ranges (layers added through Model::add_layer)");
  int64_t resident_n = 0, covered = 0, trainable = 0;
  for (const auto& p : all)
    if (p->trainable) {
      trainable += p->numel();
      if (p->tied) resident_n += p->numel();
    }
  resident_buf_ = Tensor::zeros(Shape{resident_n}, gt, ex.device);
  int64_t widest = 0, cursor = 0;
  for (const auto& p : all)
    if (p->trainable && p->tied) {
      for (Model* s : slots_) {
        Param* q = s->params.find(p->name);
        if (!q) continue;  // another model chunk's copy
        q->grad = resident_buf_.flat_range(cursor, p->numel()).view(p->shape);
        resident_.push_back(q);
      }
      cursor += p->numel();
    }
  for (size_t i = 0; i < m.layers.size(); ++i) {
    int64_t lo = -1, hi = -1;
    std::vector<Param*> ps;
    for (size_t k = m.first_param_of(i); k < m.first_param_of(i + 1); ++k) {
      const Param& p = *all[k];
      if (!p.trainable || p.tied) continue;
      lo = lo < 0 ? p.offset : std::min(lo, p.offset);
      hi = std::max(hi, p.offset + p.numel());
      covered += p.numel();
      for (Model* s : slots_)
        if (Param* q = s->params.find(p.name)) ps.push_back(q);
    }
    if (lo < 0) lo = hi = 0;
    layer_range_.emplace_back(lo, hi);
    layer_params_.push_back(std::move(ps));
    widest = std::max(widest, hi - lo);
  }
  DTRAIN_CHECK(covered + resident_n == trainable, "ZeRO-2: the layers' parameters cover {} of {} elements",
               covered + resident_n, trainable);
  for (Window& w : win_) w.buf = Tensor::zeros(Shape{widest}, gt, ex.device);
  if (stage_ == 3) {
    // The masters of this rank's range and their compute copy, and two
    // parameter windows: the widest gather unit's and the widest of the units
    // that read no tied parameter (units reading one go to the first).
    const DType ct = ps_.compute_values().dtype();
    const int64_t count = range_.end - range_.begin;
    master_ = Tensor::zeros(Shape{count}, ps_.values().dtype(), ex.device);
    ops::copy(ex, ps_.values().flat_range(range_.begin, count), master_);
    compute_shard_ = master_;
    if (ps_.mixed()) {
      compute_shard_ = Tensor::zeros(Shape{count}, ct, ex.device);
      ops::copy(ex, ps_.compute_values().flat_range(range_.begin, count), compute_shard_);
    }
    int64_t big = 0, small = 0;
    for (size_t i = 0; i < m.layers.size(); ++i) {
      // Layer i's unit: every parameter it reads, its own (a tied one too)
      // and those it borrows (the head's wte, which the embedding declares
      // when one stage holds both).
      std::vector<const Param*> unit;
      for (size_t k = m.first_param_of(i); k < m.first_param_of(i + 1); ++k)
        if (all[k]->trainable) unit.push_back(all[k].get());
      for (const Param* b : m.layers[i]->borrowed_params())
        if (b->trainable && std::find(unit.begin(), unit.end(), b) == unit.end()) unit.push_back(b);
      int64_t lo = -1, hi = -1, padded = 0;
      bool tied = false;
      std::vector<Param*> ps;
      for (const Param* p : unit) {
        lo = lo < 0 ? p->offset : std::min(lo, p->offset);
        hi = std::max(hi, p->offset + p->numel());
        padded += (p->numel() + kShardAlign - 1) / kShardAlign * kShardAlign;
        tied = tied || p->tied;
        for (Model* s : slots_)
          if (Param* q = s->params.find(p->name)) ps.push_back(q);
      }
      if (lo < 0) lo = hi = 0;
      DTRAIN_CHECK(hi - lo <= padded, "ZeRO-3: layer {} reads parameters spread over [{}, {}) of the flat buffer "
                   "({} elements): one gather cannot fetch them", m.layers[i]->name(), lo, hi, padded);
      gather_range_.emplace_back(lo, hi);
      gather_params_.push_back(std::move(ps));
      big = std::max(big, hi - lo);
      if (!tied) small = std::max(small, hi - lo);
    }
    pwin_[0].buf = Tensor::zeros(Shape{big}, ct, ex.device);
    pwin_[1].buf = Tensor::zeros(Shape{small}, ct, ex.device);
  }
  // The full gradient buffer goes: every view of it is re-pointed above or
  // below (windowed parameters point at no memory until their layer's turn).
  for (Model* s : slots_) {
    for (const auto& p : s->params.all())
      if (p->trainable && !p->tied) p->grad = Tensor{};
    s->params.release_grads();
  }
}

double ZeroSharding::param_bytes() const {
  if (stage_ < 3) {
    if (master_.defined()) return static_cast<double>(master_.bytes() + ps_.compute_values().bytes());
    return static_cast<double>(ps_.values().bytes());  // the masters are what the layers compute with
  }
  double b = static_cast<double>(master_.bytes());
  if (compute_shard_.raw() != master_.raw()) b += static_cast<double>(compute_shard_.bytes());
  for (const ParamWindow& w : pwin_) b += static_cast<double>(w.buf.bytes());
  return b;
}

void ZeroSharding::shard_params() {
  DTRAIN_CHECK(master_.defined(), "shard_params under ZeRO-{} without a master shard", stage_);
  if (stage_ < 3) {
    for (Model* s : slots_) s->params.release_masters();
    return;
  }
  for (Model* s : slots_) {
    for (const auto& p : s->params.all())
      if (p->trainable) p->compute = Tensor{};  // a window's, from its layer's turn on
    s->params.release_values();
  }
}

WorkHandle ZeroSharding::gather_range(int64_t lo, int64_t hi, const Tensor& dst) {
  const std::vector<int64_t> c = pieces(lo, hi);
  const int64_t len = range_.end - range_.begin;
  int64_t at = std::clamp<int64_t>(lo - range_.begin, 0, len);
  if (broken_ == 2 && c[me_] > 0) at = at + c[me_] < len ? at + 1 : std::max<int64_t>(0, at - 1);  // tests
  return dp_.all_gather(compute_shard_.flat_range(at, c[me_]), dst.flat_range(0, hi - lo), c);
}

void ZeroSharding::acquire(size_t layer, int64_t next) {
  const auto [lo, hi] = gather_range_[layer];
  const auto held = [&](int64_t l) { return pwin_[0].layer == l ? 0 : pwin_[1].layer == l ? 1 : -1; };
  const auto fits = [&](int w, int64_t l) {
    const auto [a, b] = gather_range_[static_cast<size_t>(l)];
    return b - a <= pwin_[w].buf.numel();
  };
  int k = -1;
  if (hi > lo) {
    k = held(static_cast<int64_t>(layer));
    if (k < 0) {
      // Not prefetched: gathered now, into a window it fits that is not
      // receiving `next` (the small one first: the wide one stays free for a
      // wide neighbour); else into the wide one, whose prefetch is dropped.
      k = 0;
      for (int c : {1, 0})
        if (fits(c, static_cast<int64_t>(layer)) && !(next >= 0 && pwin_[c].layer == next)) {
          k = c;
          break;
        }
      ParamWindow& w = pwin_[k];
      if (w.pending) w.pending->wait();
      w.layer = static_cast<int64_t>(layer);
      w.pending = gather_range(lo, hi, w.buf);
      ++demand_gathers_;
    }
    ParamWindow& w = pwin_[k];
    if (w.pending) {
      w.pending->wait();
      w.pending.reset();
    }
    for (Param* p : gather_params_[layer]) p->compute = w.buf.flat_range(p->offset - lo, p->numel()).view(p->shape);
  }
  if (!overlap_ || next < 0) return;
  const auto [nlo, nhi] = gather_range_[static_cast<size_t>(next)];
  if (nhi == nlo || held(next) >= 0) return;
  // Into a window it fits other than this layer's (the idle one first); none
  // (a wide unit after one in the wide window): gathered at its turn.
  int j = -1;
  for (int c : {1, 0})
    if (c != k && fits(c, next) && (j < 0 || (pwin_[j].pending && !pwin_[c].pending))) j = c;
  if (j < 0) return;
  ParamWindow& w = pwin_[j];
  if (w.pending) w.pending->wait();
  w.layer = next;
  w.pending = gather_range(nlo, nhi, w.buf);  // overlaps this layer's compute
}

void ZeroSharding::before_forward(size_t layer, int64_t next) {
  if (stage_ == 3) acquire(layer, next);
}

void ZeroSharding::gather_full() {
  if (!master_.defined() || ps_.values().defined()) return;  // the masters are whole
  Tensor full = Tensor::zeros(Shape{ps_.flat_numel()}, master_.dtype(), master_.device());
  dp_.all_gather(master_, full, counts_)->wait();
  for (Model* s : slots_) s->params.adopt_values(full);
}

void ZeroSharding::release_full() {
  if (!master_.defined() || !ps_.values().defined()) return;
  for (Model* s : slots_) {
    if (stage_ < 3)
      s->params.release_masters();
    else
      s->params.release_values();
  }
}

void ZeroSharding::shards_loaded() {
  DTRAIN_CHECK(master_.defined(), "shards_loaded under ZeRO-{} without a master shard", stage_);
  const Exec& ex = ps_.exec();
  if (compute_shard_.raw() != master_.raw()) ops::convert(ex, master_, compute_shard_);
  if (stage_ == 3) {
    for (ParamWindow& w : pwin_) w.layer = -1;  // stale
  } else {
    stale_ = true;
  }
}

void ZeroSharding::refresh() {
  if (!stale_) return;
  stale_ = false;
  gather_params();
}

double ZeroSharding::grad_bytes() const {
  double b = static_cast<double>(shard_.bytes());
  if (stage_ == 1) return b + static_cast<double>(ps_.grads().bytes());
  b += static_cast<double>(resident_buf_.bytes());
  for (const Window& w : win_) b += static_cast<double>(w.buf.bytes());
  return b;
}

std::vector<int64_t> ZeroSharding::pieces(int64_t lo, int64_t hi) const {
  std::vector<int64_t> c(counts_.size());
  for (size_t r = 0; r < c.size(); ++r)
    c[r] = std::max<int64_t>(0, std::min(hi, starts_[r] + counts_[r]) - std::max(lo, starts_[r]));
  return c;
}

void ZeroSharding::begin_step() {
  const Exec& ex = ps_.exec();
  ops::zero(ex, shard_);
  if (resident_buf_.defined() && resident_buf_.numel()) ops::zero(ex, resident_buf_);
  next_ = buckets();
  turn_ = 0;
}

// This rank's piece of [lo, hi) in the shard (clamped: empty pieces anywhere).
static Tensor piece_of(Tensor& shard, FlatRange r, int64_t lo, int64_t count) {
  const int64_t at = std::clamp<int64_t>(lo - r.begin, 0, r.end - r.begin);
  return shard.flat_range(at, count);
}

void ZeroSharding::start_bucket(int64_t b) {
  const int64_t lo = bounds_[b], hi = bounds_[b + 1];
  std::vector<int64_t> c = pieces(lo, hi);
  int64_t in_lo = lo;
  if (broken_ == 1) in_lo = hi < ps_.grads().numel() ? lo + 1 : lo - 1;  // tests: a misplaced scatter
  Tensor out = piece_of(shard_, range_, lo, c[me_]);
  pending_.push_back(dp_.reduce_scatter(ps_.grads().flat_range(in_lo, hi - lo), out, ReduceOp::sum, c));
}

void ZeroSharding::point_grads(size_t layer, const Tensor& window, int64_t lo) {
  for (Param* p : layer_params_[layer]) p->grad = window.flat_range(p->offset - lo, p->numel()).view(p->shape);
}

void ZeroSharding::land(Window& w) {
  if (!w.pending) return;
  w.pending->wait();
  w.pending.reset();
  const int64_t n = pieces(w.lo, w.hi)[me_];
  if (n == 0) return;
  const int64_t len = range_.end - range_.begin;
  int64_t at = std::clamp<int64_t>(w.lo - range_.begin, 0, len);
  if (broken_ == 1) at = at + n < len ? at + 1 : std::max<int64_t>(0, at - 1);  // tests: a misplaced piece
  Tensor dst = shard_.flat_range(at, n);
  ops::add(ps_.exec(), dst, w.buf.flat_range(0, n), dst);
}

void ZeroSharding::before_backward(size_t layer, bool /*last*/, int64_t next) {
  if (stage_ == 3) acquire(layer, next);
  if (stage_ < 2) return;
  const auto [lo, hi] = layer_range_[layer];
  if (hi == lo) return;
  Window& w = win_[turn_];
  land(w);  // its previous layer's reduction, before the window is reused
  w.lo = lo;
  w.hi = hi;
  ops::zero(ps_.exec(), w.buf.flat_range(0, hi - lo));
  point_grads(layer, w.buf, lo);
}

void ZeroSharding::after_backward(size_t layer, bool last, bool overlap) {
  if (stage_ == 1) {
    if (!last || !overlap) return;
    // Every gradient from this layer's first parameter on is final.
    const auto& all = ps_.all();
    int64_t offset = ps_.grads().numel();
    for (size_t k = slots_[0]->first_param_of(layer); k < all.size(); ++k)
      if (all[k]->trainable) {
        offset = all[k]->offset;
        break;
      }
    while (next_ > 0 && bounds_[next_ - 1] >= offset) start_bucket(--next_);
    for (auto& p : pending_) p->test();
    return;
  }
  const auto [lo, hi] = layer_range_[layer];
  if (hi == lo) return;
  Window& w = win_[turn_];
  std::vector<int64_t> c = pieces(lo, hi);
  // In place: this rank's reduced piece lands at the window's start.
  w.pending = dp_.reduce_scatter(w.buf.flat_range(0, hi - lo), w.buf.flat_range(0, c[me_]), ReduceOp::sum, c);
  turn_ = 1 - turn_;
  if (win_[turn_].pending) win_[turn_].pending->test();
}

double ZeroSharding::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  const Exec& ex = ps_.exec();
  if (stage_ == 1) {
    while (next_ > 0) start_bucket(--next_);
    for (auto& p : pending_) p->wait();
    pending_.clear();
    if (embed_) {
      // Tied parameters: the buckets scattered this stage's own sums; the
      // shard takes the sum over both stages' copies instead.
      for (const auto& p : ps_.all()) {
        if (!p->trainable || !p->tied) continue;
        Tensor g = p->grad.view(Shape{p->numel()});
        embed_->all_reduce(g, ReduceOp::sum)->wait();
        dp_.all_reduce(g, ReduceOp::sum)->wait();
        const int64_t lo = std::max(p->offset, range_.begin), hi = std::min(p->offset + p->numel(), range_.end);
        if (hi > lo) ops::copy(ex, g.flat_range(lo - p->offset, hi - lo), shard_.flat_range(lo - range_.begin, hi - lo));
      }
    }
  } else {
    land(win_[turn_]);  // the older one first
    land(win_[1 - turn_]);
    if (resident_buf_.defined() && resident_buf_.numel()) {
      // The tied parameters' step gradients (the head's and the embedding's
      // contributions, every micro-batch's), summed over the pipeline's
      // embedding group, then reduce-scattered over dp into the shard (their
      // piece of it: no window lands there).
      if (embed_) embed_->all_reduce(resident_buf_, ReduceOp::sum)->wait();
      for (const auto& p : ps_.all()) {
        if (!p->trainable || !p->tied) continue;
        const std::vector<int64_t> c = pieces(p->offset, p->offset + p->numel());
        dp_.reduce_scatter(p->grad.view(Shape{p->numel()}), piece_of(shard_, range_, p->offset, c[me_]), ReduceOp::sum,
                           c)->wait();
      }
    }
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double ZeroSharding::grad_sum_squares(bool replicated) {
  std::vector<Tensor> gs;
  for (const auto& p : ps_.all()) {
    if (!(p->trainable && p->primary && (p->shard.split() || replicated))) continue;
    const int64_t lo = std::max(p->offset, range_.begin), hi = std::min(p->offset + p->numel(), range_.end);
    if (hi > lo) gs.push_back(shard_.flat_range(lo - range_.begin, hi - lo));
  }
  scalar_.data<double>()[0] = ops::sum_squares(ps_.exec(), gs);
  dp_.all_reduce(scalar_, ReduceOp::sum)->wait();
  return scalar_.data<double>()[0];
}

void ZeroSharding::gather_params() {
  if (stage_ == 3) {
    // The optimizer wrote this rank's masters and their compute copy; the
    // layers gather theirs when they run: the windows are stale.
    for (ParamWindow& w : pwin_) {
      if (w.pending) w.pending->wait();
      w.pending.reset();
      w.layer = -1;
    }
    return;
  }
  // Mixed precision: the updated bf16 copies (the optimizer wrote this
  // rank's range); else the updated masters, which the layers compute with.
  Tensor& v = master_.defined() ? ps_.compute_values() : ps_.values();
  const int64_t n = v.numel(), count = range_.end - range_.begin;
  int64_t from = range_.begin;
  if (broken_ == 2) from = from + count < n ? from + 1 : from - 1;  // tests: a misplaced gather
  dp_.all_gather(v.flat_range(from, count), v, counts_)->wait();
}

}  // namespace dtrain
