// `dtrain generate CHECKPOINT`: text sampled from a trained GPT on one
// process, whatever layout wrote the checkpoint, with the tokenizer the run
// was trained with (its config's data.tokenizer); or `dtrain generate
// hf:DIR`, from a Hugging Face GPT-2 or LLaMA directory with its own tokenizer. The prompt is encoded, then
// one token at a time: the model reads the last context_length tokens and the
// next one is drawn from its logits at the last position (greedy with
// --temperature 0, else softmax(logits / T) over the top k and the top-p
// nucleus), from a random stream keyed by --seed and the token's index, so a
// seed gives the same text.
//
// The logits come from a key/value cache (model/kv_decoder.h): each new token
// costs one token's products instead of a forward of the whole window. With
// --full-window (the reference, which tests compare it with) the model's own
// forward runs over the window every time: Model::forward_layers runs a fixed
// sequence length, so the tokens go at the start of a context_length window
// padded at the end, and causal attention keeps the padding from reaching the
// positions read.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "checkpoint/load_model.h"
#include "commands.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "kernels/cpu/gemm.h"
#include "model/kv_decoder.h"

namespace dtrain_cli {

namespace {

constexpr uint64_t kMaxTokens = uint64_t{1} << 20;

struct GenerateOptions {
  std::string path, prompt, tokenizer_dir;
  uint64_t tokens = 200;
  double temperature = 0.8;
  int64_t top_k = 200;
  double top_p = 1.0;  // nucleus: the fewest most likely tokens holding this much of the probability
  uint64_t seed = 1337;
  bool full_window = false;  // the model's forward over the window for every token (the cache's reference)
};

// The next token from one row of logits over ids [0, n).
int32_t sample(const float* logits, int64_t n, const GenerateOptions& o, int64_t index) {
  if (o.temperature == 0.0) return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
  std::vector<double> p(logits, logits + n);
  double cut = -INFINITY;
  if (o.top_k > 0 && o.top_k < n) {
    std::vector<double> sorted = p;
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<>());
    cut = sorted[o.top_k - 1];
  }
  const double top = *std::max_element(p.begin(), p.end());
  double sum = 0;
  for (double& x : p) {
    x = x < cut ? 0.0 : std::exp((x - top) / o.temperature);
    sum += x;
  }
  if (o.top_p < 1.0) {
    // Nucleus sampling (Holtzman et al. 2019), after top-k and the temperature
    // as in Hugging Face's: the most likely tokens (ties by id) until they hold
    // top_p of the probability; the others are dropped.
    std::vector<int64_t> order;
    for (int64_t i = 0; i < n; ++i)
      if (p[i] > 0) order.push_back(i);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] != p[b] ? p[a] > p[b] : a < b; });
    double kept = 0;
    size_t keep = 0;
    while (keep < order.size() && (keep == 0 || kept < o.top_p * sum)) kept += p[order[keep++]];
    for (size_t j = keep; j < order.size(); ++j) p[order[j]] = 0;
    sum = kept;
  }
  double u = dtrain::CounterRng(o.seed, static_cast<uint64_t>(index)).uniform() * sum;
  for (int64_t i = 0; i < n; ++i) {
    u -= p[i];
    if (u < 0 && p[i] > 0) return static_cast<int32_t>(i);
  }
  for (int64_t i = n - 1; i >= 0; --i)  // rounding left u >= 0: the last candidate
    if (p[i] > 0) return static_cast<int32_t>(i);
  return 0;
}

int run_generate(const GenerateOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  dtrain::cpu::gemm_backend();  // a bad DTRAIN_CPU_GEMM: one line, exit 2, as for run
  dtrain::LoadedModel lm = dtrain::load_model(o.path, 16);
  for (const std::string& s : lm.skipped) eprint("dtrain: warning: {}\n", printable(s));
  for (const std::string& s : lm.notes) eprint("dtrain: {}\n", s);
  const dtrain::ModelConfig& mc = lm.cfg.model;
  if (mc.type != "gpt")
    throw dtrain::ConfigError(fmt::format("{}: model.type is \"{}\": generate needs a GPT", lm.dir, mc.type));
  std::unique_ptr<dtrain::Tokenizer> tok;
  try {
    tok = dtrain::make_tokenizer(lm.cfg.data, o.tokenizer_dir);
  } catch (const dtrain::ConfigError& e) {  // a byte-level model's
    throw dtrain::ConfigError(fmt::format("--tokenizer-dir: {}", e.what()));
  } catch (const dtrain::InputError& e) {
    const bool hf = lm.cfg.data.tokenizer == "hf";
    if (!o.tokenizer_dir.empty())
      throw dtrain::InputError(fmt::format("--tokenizer-dir: {} (expected {})", e.what(),
                                           hf ? "a Hugging Face tokenizer.json"
                                              : "GPT-2's encoder.json and vocab.bpe, or a Hugging Face directory's "
                                                "vocab.json and merges.txt"));
    throw dtrain::InputError(fmt::format("{} (the run's data.tokenizer = \"{}\", data.tokenizer_dir = \"{}\"; "
                                         "point --tokenizer-dir at {})",
                                         e.what(), lm.cfg.data.tokenizer, lm.cfg.data.tokenizer_dir,
                                         hf ? "its tokenizer.json" : "GPT-2's encoder.json and vocab.bpe"));
  }
  // (A byte-level model may have fewer than the 256 byte ids: small test vocabularies.)
  if (lm.cfg.data.tokenizer == "gpt2" || lm.cfg.data.tokenizer == "hf")
    dtrain::check_tokenizer_fits(*tok, mc.vocab_size, o.tokenizer_dir.empty() ? "data.tokenizer_dir" : "--tokenizer-dir",
                                 o.tokenizer_dir.empty() ? lm.cfg.data.tokenizer_dir : o.tokenizer_dir);
  // Ids the tokenizer can decode; a model's padding rows are never drawn.
  const int64_t n_ids = std::min<int64_t>(tok->vocab_size(), mc.used_vocab());
  std::vector<int32_t> ids;
  try {
    ids = tok->encode(o.prompt);  // special tokens' spellings as the tokens, as Hugging Face encodes a prompt
  } catch (const dtrain::InputError& e) {
    throw dtrain::InputError(fmt::format("--prompt: {}", e.what()));
  }
  // A tokenizer with a begin-of-text id (LLaMA's) starts every text with it,
  // as its models were trained; else an empty prompt starts a document.
  if (const int32_t bos = tok->begin_of_text(); bos >= 0 && (ids.empty() || ids.front() != bos))
    ids.insert(ids.begin(), bos);
  if (ids.empty()) ids.push_back(tok->document_start() >= 0 ? tok->document_start() : '\n');
  for (int32_t id : ids)
    if (id >= mc.vocab_size)
      throw dtrain::InputError(fmt::format("--prompt: token id {} is outside the model's vocabulary ({})", id,
                                           mc.vocab_size));

  // The next token's logits: from the key/value cache (kv_decoder.h), which
  // appends each token to the positions so far, and starts again from the
  // last context_length tokens once the text is longer; or (--full-window,
  // the reference) from the model's forward over that window every time.
  dtrain::KvDecoder cache(lm.model->params, mc);
  dtrain::Model* whole = nullptr;  // --full-window: the model planned for context_length tokens
  std::unique_ptr<dtrain::Model> replica;
  dtrain::Ctx ctx;
  ctx.training = false;
  size_t cached = 0;  // ids[start, start + cached) are in the cache
  const size_t prompt_len = ids.size();
  // The text goes out as it is made: the prompt, then each token's bytes
  // (GPT-2's byte-level tokens and the char tokenizer both decode a sequence
  // to its tokens' bytes in order, so what was printed never changes).
  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);
  bool ended = false;  // the model ended the document (its end-of-text token): the text stops there
  for (int64_t i = 0; i < static_cast<int64_t>(o.tokens); ++i) {
    const int64_t len = std::min<int64_t>(static_cast<int64_t>(ids.size()), mc.context_length);
    const size_t start = ids.size() - static_cast<size_t>(len);
    const float* logits = nullptr;
    dtrain::Tensor out;  // --full-window: the model's logits (1, T, V)
    if (!o.full_window) {
      // The first window, or one that moved on (every position shifts): all anew.
      const bool anew = start > 0 || cached == 0;
      if (anew) cache.reset();
      logits = cache.append(std::span(ids).subspan(anew ? start : cached)).data();
      cached = ids.size() - start;
    } else {
      if (!whole) {
        if (lm.model->stage_sample_shape[0] == mc.context_length) {
          whole = lm.model.get();
        } else {
          replica = dtrain::build_replica(*lm.model, mc, mc.context_length);
          replica->stage_sample_shape = dtrain::Shape{mc.context_length};  // the owner's is 16 tokens
          whole = replica.get();
        }
        whole->plan(1);
      }
      dtrain::Tensor x = dtrain::Tensor::zeros(dtrain::Shape{1, mc.context_length}, dtrain::DType::i32);
      std::copy(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.end(), x.data<int32_t>());
      out = whole->forward_layers(x, ctx);
      logits = out.data<float>() + (len - 1) * mc.vocab_size;
    }
    const int32_t next = sample(logits, n_ids, o, i);
    if (next == tok->end_of_text()) {
      ended = true;
      break;
    }
    ids.push_back(next);
    const std::string piece = tok->decode({next}, dtrain::Tokenizer::Position::continuation);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }
  const std::vector<int32_t> generated(ids.begin() + static_cast<std::ptrdiff_t>(prompt_len), ids.end());
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool hf = lm.dir.rfind("hf:", 0) == 0;  // a Hugging Face directory: no step
  eprint("dtrain: {} tokens from {} ({}tokenizer {}) in {:.2f} s{}\n", generated.size(), lm.dir,
         hf ? "" : fmt::format("step {}, ", lm.meta.step), tok->name(), s,
         ended ? fmt::format("; stopped before --tokens {}: the model ended the text (its end-of-text token)", o.tokens)
               : std::string());
  return 0;
}

}  // namespace

Subcommand add_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Print text sampled from a trained GPT (one process, any layout's checkpoint), decoded with "
                  "the run's tokenizer");
  cmd->add_option("checkpoint", o->path,
                  "A checkpoint, its checkpoint.h5, or a directory of them (the newest); or hf:DIR, a Hugging Face "
                  "GPT-2 or LLaMA directory (with its tokenizer.json for LLaMA)")
      ->required();
  cmd->add_option("--prompt", o->prompt, "Text to continue (default: none, the model starts a document)");
  cmd->add_option("--tokens", o->tokens, "Tokens to generate (at most 2^20; fewer where the model ends the text)")
      ->check(whole_number(0, kMaxTokens))
      ->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "Softmax temperature, 0 to 1000; 0 = greedy (the most likely token)")
      ->check(number_in(0, 1000))
      ->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Sample among the k most likely tokens (0 = all)")
      ->check(whole_number(0, INT32_MAX))
      ->capture_default_str();
  cmd->add_option("--top-p", o->top_p,
                  "Sample among the fewest most likely tokens that hold this much of the probability "
                  "(nucleus sampling; after --top-k; 1 = all)")
      ->check(number_in(1e-9, 1))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed: the same seed gives the same text")
      ->check(whole_number(0, UINT64_MAX))
      ->capture_default_str();
  cmd->add_flag("--full-window", o->full_window,
               "Run the model's forward over the last context_length tokens for every token instead of the "
               "key/value cache (the reference: much slower, the same logits to rounding)");
  cmd->add_option("--tokenizer-dir", o->tokenizer_dir,
                  "The run's tokenizer files, if not at its data.tokenizer_dir: for a run on GPT-2's tokens "
                  "(data.tokenizer = \"gpt2\") encoder.json and vocab.bpe (or an export's vocab.json and merges.txt), "
                  "for one on a Hugging Face tokenizer (\"hf\") its tokenizer.json; a byte-level run has none");
  return {cmd, [o](Context& ctx) { return ctx.world_rank == 0 ? run_generate(*o) : kExitOk; }};
}

}  // namespace dtrain_cli
