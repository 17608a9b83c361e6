#include "checkpoint/hf.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "checkpoint/hf_internal.h"
#include "checkpoint/safetensors.h"
#include "config/schema.h"
#include "core/file_kind.h"
#include "core/error.h"
#include "data/tokenizer.h"

namespace dtrain {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int64_t kGpt2Ids = 50257;  // GPT-2 BPE's vocabulary
constexpr double kLayerNormEps = 1e-5;

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// (rows, cols) -> (cols, rows).
std::vector<float> transpose(const std::vector<float>& a, int64_t rows, int64_t cols) {
  std::vector<float> t(a.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = a[r * cols + c];
  return t;
}

}  // namespace

std::string hf_detail::padded_vocab_note(const ModelConfig& cfg, int64_t vocab, const std::string& dir) {
  return fmt::format("vocabulary padded: {} rows from {}, {} zero rows up to model.vocab_size = {}; {}", vocab, dir,
                     cfg.vocab_size - vocab, cfg.vocab_size,
                     cfg.used_vocab() <= vocab
                         ? fmt::format("the padding is never predicted (model.vocab_used = {})", cfg.used_vocab())
                         : fmt::format("model.vocab_used = {}: the padding rows' logits (0) join the softmax, so the "
                                       "loss is not the imported model's",
                                       cfg.used_vocab()));
}

json hf_detail::read_config_json(const std::string& dir, const char* role, const char* said_as) {
  const std::string cfg_name = (fs::path(dir) / "config.json").string();
  require_regular_file(cfg_name, role);
  std::ifstream cf(cfg_name);
  if (!cf)
    throw InputError(fmt::format("{}'{}': cannot open (a Hugging Face directory holds config.json and "
                                 "model.safetensors)",
                                 said_as, cfg_name));
  json hc;
  try {
    hc = json::parse(cf);
  } catch (const json::exception& e) {
    throw InputError(fmt::format("'{}': not valid JSON: {}", cfg_name, e.what()));
  }
  if (!hc.is_object()) throw InputError(fmt::format("'{}': expected a JSON object", cfg_name));
  return hc;
}

namespace {

using hf_detail::read_config_json;

// Every Hugging Face tensor name of an n_layer GPT-2 (without "transformer.").
std::vector<std::string> hf_names(int64_t n_layer) {
  std::vector<std::string> out = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"};
  for (int64_t i = 0; i < n_layer; ++i)
    for (const char* s : {"ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"})
      for (const char* w : {"weight", "bias"}) out.push_back(fmt::format("h.{}.{}.{}", i, s, w));
  return out;
}

}  // namespace

HfName hf_name(const std::string& n) {
  if (n == "wte.weight" || n == "wpe.weight" || n == "ln_f.weight" || n == "ln_f.bias") return {n, false};
  if (starts_with(n, "blocks.")) {
    const size_t dot = n.find('.', 7);
    if (dot != std::string::npos) {
      const std::string layer = n.substr(7, dot - 7), rest = n.substr(dot + 1);
      static const std::vector<std::pair<std::string, std::string>> parts = {
          {"ln1.", "ln_1."}, {"ln2.", "ln_2."}, {"attn.qkv.", "attn.c_attn."},
          {"attn.proj.", "attn.c_proj."}, {"mlp.fc.", "mlp.c_fc."}, {"mlp.proj.", "mlp.c_proj."}};
      for (const auto& [d, h] : parts)
        if (starts_with(rest, d)) {
          const std::string leaf = rest.substr(d.size());
          const bool linear = d[0] != 'l';
          return {"h." + layer + "." + h + leaf, linear && leaf == "weight"};
        }
    }
  }
  throw InternalError(fmt::format("parameter '{}' has no Hugging Face GPT-2 name", n));
}

namespace {

// "" where the model's parts are GPT-2's, else which keys are not.
std::string gpt2_parts_problem(const ModelConfig& m) {
  std::vector<std::string> keys;
  if (m.rms_norm()) keys.push_back(fmt::format("model.norm = \"{}\"", m.norm));
  if (m.swiglu()) keys.push_back(fmt::format("model.mlp = \"{}\"", m.mlp));
  if (m.rope()) keys.push_back(fmt::format("model.position = \"{}\"", m.position));
  if (m.ffn_width() != 4 * m.n_embd) keys.push_back(fmt::format("model.ffn_hidden = {}", m.ffn_width()));
  if (!m.tie_embeddings) keys.push_back("model.tie_embeddings = false");
  if (m.kv_heads() != m.n_head) keys.push_back(fmt::format("model.n_kv_head = {}", m.kv_heads()));
  if (keys.empty()) return "";
  return fmt::format("{}: the Hugging Face GPT-2 format holds GPT-2's parts only (layernorm, a gelu MLP of "
                     "4 n_embd, learned positions, the head tied to wte, as many key/value heads as query heads)",
                     fmt::join(keys, ", "));
}

// "" where the model's parts are GPT-2's or LLaMA's, else one line saying so.
std::string parts_problem(const ModelConfig& m) {
  if (gpt2_parts_problem(m).empty() || hf_detail::llama_parts_problem(m).empty()) return "";
  return fmt::format("model.norm = \"{}\", model.mlp = \"{}\", model.position = \"{}\", model.bias = {}, "
                     "model.ffn_hidden = {}, model.tie_embeddings = {}{}: neither Hugging Face format holds this mix "
                     "(GPT-2's: layernorm, a gelu MLP of 4 n_embd, learned positions, biases or none, the head "
                     "tied to wte, as many key/value heads as query heads; LLaMA's: rmsnorm, swiglu, rope, no biases)",
                     m.norm, m.mlp, m.position, m.bias, m.ffn_width(), m.tie_embeddings,
                     m.kv_heads() != m.n_head ? fmt::format(", model.n_kv_head = {}", m.kv_heads()) : "");
}

}  // namespace

HfExportResult export_hf(const Model& model, const Config& cfg, const std::string& out_dir,
                         int64_t vocab_size, const Tokenizer* tokenizer) {
  const ModelConfig& m = cfg.model;
  if (m.type != "gpt")
    throw ConfigError(fmt::format("model.type is \"{}\": only a GPT exports to the Hugging Face GPT-2 format",
                                  m.type));
  if (const std::string why = parts_problem(m); !why.empty()) throw ConfigError(why);
  HfExportResult r;
  const bool gpt2_ids = cfg.data.tokenizer == "gpt2", hf_ids = cfg.data.tokenizer == "hf";
  if (hf_ids && !tokenizer)
    throw ConfigError("data.tokenizer = \"hf\": the export needs the run's tokenizer (data.tokenizer_dir's "
                      "tokenizer.json) for its ids");
  const int64_t tokens = gpt2_ids ? kGpt2Ids : hf_ids ? tokenizer->vocab_size() : 256;
  const char* whose = gpt2_ids ? "GPT-2" : hf_ids ? "Hugging Face" : "byte";
  // The ids the run's tokenizer emits: rows below them are tokens, not padding.
  const int64_t ids = std::min<int64_t>(tokens, m.vocab_size);
  // By default the ids the model predicts (model.vocab_used: the export then
  // gives the run's loss), else the tokenizer's.
  const int64_t default_V = m.vocab_used > 0                                   ? std::max(m.vocab_used, ids)
                            : (gpt2_ids || hf_ids) && m.vocab_size > tokens ? tokens
                                                                            : m.vocab_size;
  const int64_t V = vocab_size != 0 ? vocab_size : default_V;
  if (V < ids || V > m.vocab_size)
    throw ConfigError(fmt::format("--vocab-size {}: expected {} .. model.vocab_size ({}): the rows below {} are the "
                                  "{} tokenizer's ids{}, not padding",
                                  V, ids, m.vocab_size, ids, whose, gpt2_ids ? " (<|endoftext|> is 50256)" : ""));
  if (V < m.vocab_size)
    r.notes.push_back(fmt::format("vocabulary: the first {} of the model's {} rows exported ({} padding rows "
                                  "dropped){}",
                                  V, m.vocab_size, m.vocab_size - V,
                                  (gpt2_ids || hf_ids) && V == tokens ? fmt::format(", the ids of the {} tokenizer", whose)
                                                                      : ""));
  if (V > m.used_vocab() && V > default_V)
    r.notes.push_back(fmt::format("vocabulary: rows {} .. {} exported too, padding the run never predicted "
                                  "(model.vocab_used = {}): Hugging Face's softmax includes them, so its loss is not "
                                  "the run's (the default --vocab-size leaves them out)",
                                  m.used_vocab(), V - 1, m.used_vocab()));
  // config.json's bos_token_id and eos_token_id: GPT-2's <|endoftext|>, the
  // Hugging Face tokenizer's own; none among the byte tokenizer's ids (null,
  // not the format's defaults, which would stop generation at some byte).
  r.bos = gpt2_ids ? 50256 : hf_ids ? tokenizer->begin_of_text() : -1;
  r.eos = gpt2_ids ? 50256 : hf_ids ? tokenizer->end_of_text() : -1;
  if (!gpt2_parts_problem(m).empty()) return hf_detail::export_llama(model, cfg, out_dir, V, std::move(r));
  std::vector<SafeTensorOut> out;
  std::set<std::string> written;
  for (const auto& p : model.params.all()) {
    if (!p->primary) continue;
    DTRAIN_CHECK(!p->shard.split() && p->value.dtype() == DType::f32,
                 "export needs the whole fp32 model; {} is a shard or not fp32", p->name);
    const HfName h = hf_name(p->name);
    const float* v = p->value.data<float>();
    std::vector<float> data(v, v + p->numel());
    std::vector<int64_t> shape(p->shape.begin(), p->shape.end());
    if (h.transposed) {
      data = transpose(data, shape[0], shape[1]);
      std::swap(shape[0], shape[1]);
    }
    if (p->name == "wte.weight" && V < shape[0]) {
      data.resize(V * shape[1]);
      shape[0] = V;
    }
    out.push_back({"transformer." + h.name, shape, std::move(data)});
    written.insert(h.name);
  }
  int64_t zero_biases = 0;
  for (const std::string& n : hf_names(m.n_layer)) {
    if (written.count(n)) continue;
    DTRAIN_CHECK(n.size() > 5 && n.substr(n.size() - 5) == ".bias" && !m.bias,
                 "the model has no parameter for Hugging Face tensor {}", n);
    int64_t len = m.n_embd;
    if (n.find("c_attn") != std::string::npos) len = 3 * m.n_embd;
    if (n.find("c_fc") != std::string::npos) len = 4 * m.n_embd;
    out.push_back({"transformer." + n, {len}, std::vector<float>(len, 0.0f)});
    ++zero_biases;
  }
  if (zero_biases)
    r.notes.push_back(fmt::format("model.bias = false: {} zero bias vectors written (GPT-2 has biases)",
                                  zero_biases));
  json c = {{"architectures", {"GPT2LMHeadModel"}},
            {"model_type", "gpt2"},
            {"vocab_size", V},
            {"n_positions", m.context_length},
            {"n_ctx", m.context_length},
            {"n_embd", m.n_embd},
            {"n_layer", m.n_layer},
            {"n_head", m.n_head},
            {"n_inner", nullptr},
            {"activation_function", "gelu_new"},
            {"layer_norm_epsilon", kLayerNormEps},
            {"resid_pdrop", m.dropout},
            {"embd_pdrop", m.dropout},
            {"attn_pdrop", 0.0},  // dtrain drops after the projections, not attention probabilities
            {"initializer_range", 0.02},
            {"scale_attn_weights", true},
            {"scale_attn_by_inverse_layer_idx", false},
            {"reorder_and_upcast_attn", false},
            {"tie_word_embeddings", true},
            {"torch_dtype", "float32"},
            {"use_cache", true},
            {"dtrain_tokenizer", cfg.data.tokenizer}};
  return hf_detail::write_hf_dir(out_dir, std::move(c), out, std::move(r));
}

HfExportResult hf_detail::write_hf_dir(const std::string& out_dir, json config,
                                       const std::vector<SafeTensorOut>& tensors, HfExportResult r) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw RuntimeError(fmt::format("cannot create '{}': {}", out_dir, ec.message()));
  config["bos_token_id"] = r.bos >= 0 ? json(r.bos) : json(nullptr);
  config["eos_token_id"] = r.eos >= 0 ? json(r.eos) : json(nullptr);
  const fs::path cfg_path = fs::path(out_dir) / "config.json";
  {
    std::ofstream f(cfg_path);
    f << config.dump(2) << "\n";
    f.close();
    if (!f) throw RuntimeError(fmt::format("cannot write '{}'", cfg_path.string()));
  }
  r.bytes = write_safetensors((fs::path(out_dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  r.tensors = static_cast<int64_t>(tensors.size());
  return r;
}

void hf_detail::set_from_full(Param& p, const std::vector<float>& full) {
  DTRAIN_CHECK(p.value.dtype() == DType::f32, "model.init_from: {} is not fp32", p.name);
  Tensor host = p.value.device().is_cpu() ? p.value : Tensor::empty(p.value.shape(), p.value.dtype());
  float* dst = host.data<float>();
  if (!p.shard.split())
    std::copy(full.begin(), full.end(), dst);
  else
    for (int64_t i = 0; i < p.numel(); ++i) dst[i] = full[p.shard.global_index(i)];
  if (!p.value.device().is_cpu()) p.value.copy_from(host);  // a GPU run: uploaded
}

std::vector<std::string> hf_model_overrides(const std::string& dir) {
  if (std::error_code ec; !fs::is_directory(dir, ec))
    throw InputError(fmt::format("hf:{}: {}: expected a Hugging Face model directory (config.json and "
                                 "model.safetensors, as `dtrain export` writes)",
                                 dir, fs::exists(dir, ec) ? "not a directory" : "no such directory"));
  const std::string cfg_name = (fs::path(dir) / "config.json").string();
  const json hc = read_config_json(dir, "a Hugging Face directory's config.json (JSON)", "");
  if (hf_detail::is_llama(hc)) return hf_detail::llama_model_overrides(dir, hc);
  // Another architecture is refused first: before any key read with GPT-2's
  // defaults (1024 positions) is checked against the data.
  if (hc.contains("model_type") && hc["model_type"] != "gpt2")
    throw ConfigError(fmt::format("{}: model_type = {}: dtrain imports \"gpt2\" and \"llama\" directories; another "
                                  "architecture cannot be imported",
                                  cfg_name, hc["model_type"].dump()));
  // GPT2Config's default where a key is absent; a value that is not a
  // positive integer is refused here, naming it, before a model is built.
  auto integer = [&](const char* key, int64_t dflt) {
    if (!hc.contains(key) || hc[key].is_null()) return dflt;
    if (!hc[key].is_number_integer() || hc[key].get<int64_t>() < 1)
      throw ConfigError(fmt::format("{}: {}: expected a positive integer, got {}", cfg_name, key, hc[key].dump()));
    return hc[key].get<int64_t>();
  };
  const int64_t vocab = integer("vocab_size", kGpt2Ids), n_pos = integer("n_positions", 1024);
  // The position and token tables' rows against the keys they make (read from
  // the safetensors header alone): a mismatch is said as such, before the
  // keys' sequence length is checked against any data. (An unreadable file is
  // the import's to say.)
  try {
    const SafetensorsFile st((fs::path(dir) / "model.safetensors").string());
    for (const auto& [table, key, want] : {std::tuple{"wpe.weight", "n_positions", n_pos},
                                           std::tuple{"wte.weight", "vocab_size", vocab}}) {
      const SafeTensorInfo* t = st.find(std::string("transformer.") + table);
      if (!t) t = st.find(table);
      if (t && !t->shape.empty() && t->shape[0] != want)
        throw ConfigError(fmt::format("{}: tensor '{}' has {} rows but {}'s {} = {}{}", st.path(), t->name,
                                      t->shape[0], cfg_name, key, want,
                                      hc.contains(key) ? "" : " (absent: GPT2Config's default)"));
    }
  } catch (const InputError&) {
  }
  std::string tokenizer = vocab == kGpt2Ids ? "gpt2" : "byte";
  if (hc.contains("dtrain_tokenizer") && hc["dtrain_tokenizer"].is_string())
    tokenizer = hc["dtrain_tokenizer"].get<std::string>();
  std::vector<std::string> keys = {fmt::format("model.n_embd={}", integer("n_embd", 768)),
                                   fmt::format("model.n_layer={}", integer("n_layer", 12)),
                                   fmt::format("model.n_head={}", integer("n_head", 12)),
                                   fmt::format("model.context_length={}", n_pos),
                                   fmt::format("model.vocab_size={}", vocab),
                                   "model.init_from=" + config::toml_string("hf:" + dir),
                                   "data.tokenizer=" + config::toml_string(tokenizer)};
  // A dtrain export holds its run's tokenizer: a Hugging Face tokenizer.json,
  // or GPT-2's files under Hugging Face's names (vocab.json, merges.txt).
  std::error_code ec;
  const Gpt2TokenizerFiles gpt2 = gpt2_tokenizer_files(dir);
  if (tokenizer == "hf" || (tokenizer == "gpt2" && std::filesystem::is_regular_file(gpt2.vocab, ec) &&
                            std::filesystem::is_regular_file(gpt2.merges, ec)))
    keys.push_back("data.tokenizer_dir=" + config::toml_string(dir));
  return keys;
}

std::string keys_to_toml(const std::vector<std::string>& keys, const std::string& comment) {
  std::map<std::string, std::vector<std::string>> sections;
  for (const std::string& k : keys) {
    const size_t dot = k.find('.'), eq = k.find('=');
    DTRAIN_CHECK(dot != std::string::npos && eq != std::string::npos && dot < eq, "not section.key=value: {}", k);
    sections[k.substr(0, dot)].push_back(k.substr(dot + 1, eq - dot - 1) + " = " + k.substr(eq + 1));
  }
  std::string text = "# " + comment + "\n";
  for (const auto& [section, lines] : sections) text += fmt::format("[{}]\n{}\n", section, fmt::join(lines, "\n"));
  return text;
}

std::string hf_said_as(const std::string& message, const std::string& given) {
  constexpr std::string_view key = "model.init_from: ";
  return message.starts_with(key) ? given + ": " + message.substr(key.size()) : message;
}

Config parse_hf_config(const std::vector<std::string>& keys, const std::string& comment, const std::string& label,
                       const std::vector<std::string>& overrides, int world_size) {
  try {
    return parse_config(keys_to_toml(keys, comment), label, overrides, world_size);
  } catch (const ConfigError& e) {
    // config.json's name for each key hf_model_overrides sets: GPT2Config's,
    // or LlamaConfig's (whose keys set model.norm = "rmsnorm").
    const bool llama = std::find(keys.begin(), keys.end(), "model.norm=\"rmsnorm\"") != keys.end();
    const std::vector<std::pair<std::string, std::string>> names =
        llama ? std::vector<std::pair<std::string, std::string>>{{"model.n_embd", "hidden_size"},
                                                                 {"model.n_layer", "num_hidden_layers"},
                                                                 {"model.n_head", "num_attention_heads"},
                                                                 {"model.n_kv_head", "num_key_value_heads"},
                                                                 {"model.ffn_hidden", "intermediate_size"},
                                                                 {"model.context_length", "max_position_embeddings"},
                                                                 {"model.vocab_size", "vocab_size"},
                                                                 {"model.rope_theta", "rope_theta"},
                                                                 {"data.tokenizer", "dtrain_tokenizer"}}
              : std::vector<std::pair<std::string, std::string>>{{"model.n_embd", "n_embd"},
                                                                 {"model.n_layer", "n_layer"},
                                                                 {"model.n_head", "n_head"},
                                                                 {"model.context_length", "n_positions"},
                                                                 {"model.vocab_size", "vocab_size"},
                                                                 {"data.tokenizer", "dtrain_tokenizer"}};
    std::vector<std::string> problems;
    for (std::string p : e.problems()) {
      // "<label>:<line>: ...": a line of the generated text, which the user never saw.
      const std::string head = label + ":";
      if (p.starts_with(head)) {
        size_t at = head.size();
        while (at < p.size() && std::isdigit(static_cast<unsigned char>(p[at]))) ++at;
        if (at > head.size() && p.compare(at, 2, ": ") == 0) {
          p = label + p.substr(at);
          std::map<size_t, std::string> named;  // by where the problem names them
          for (const auto& [key, json_key] : names)
            if (const size_t where = p.find(key); where != std::string::npos) named[where] = json_key;
          std::vector<std::string> in_order;
          for (const auto& [where, json_key] : named) in_order.push_back(json_key);
          if (!in_order.empty()) p += fmt::format(" (config.json's {})", fmt::join(in_order, ", "));
        }
      }
      problems.push_back(std::move(p));
    }
    throw ConfigError(std::move(problems));
  }
}

namespace {

// GPT-2's tensors (config.json `hc` read from `dir`), each to `sink`.
std::vector<std::string> import_gpt2(Model& model, const ModelConfig& cfg, const std::string& dir, const json& hc,
                                     const std::string& tokenizer, const ParamSink& sink) {
  std::vector<std::string> notes;
  const std::string cfg_name = (fs::path(dir) / "config.json").string();
  // GPT2Config's defaults where a key is absent.
  hf_detail::ConfigJsonChecks chk{hc, cfg_name, {}};
  std::vector<std::string>& problems = chk.problems;
  if (hc.value("model_type", std::string("gpt2")) != "gpt2")
    chk.refuse("model_type",
               "dtrain imports \"gpt2\" and \"llama\" directories; another architecture cannot be imported");
  else if (const std::string why = gpt2_parts_problem(cfg); !why.empty())
    problems.push_back(fmt::format("{}: model_type = \"gpt2\" but {}", cfg_name, why));
  const std::string act = hc.contains("activation_function") && hc["activation_function"].is_string()
                              ? hc["activation_function"].get<std::string>() : "gelu_new";
  if (act != "gelu_new" && act != "gelu_pytorch_tanh")
    chk.refuse("activation_function", "dtrain's MLP uses GELU with the tanh approximation (gelu_new)");
  if (hc.contains("layer_norm_epsilon") &&
      !(hc["layer_norm_epsilon"].is_number() &&
        std::abs(hc["layer_norm_epsilon"].get<double>() - kLayerNormEps) <= 1e-12))
    chk.refuse("layer_norm_epsilon", "dtrain's layer norm uses eps 1e-5");
  if (hc.contains("tie_word_embeddings") && hc["tie_word_embeddings"] != true)
    chk.refuse("tie_word_embeddings", "dtrain's output head is tied to the token embedding");
  for (const char* flag : {"scale_attn_by_inverse_layer_idx", "add_cross_attention"})
    if (hc.contains(flag) && hc[flag] == true) chk.refuse(flag, "dtrain's attention has no such option");
  if (hc.contains("scale_attn_weights") && hc["scale_attn_weights"] == false)
    chk.refuse("scale_attn_weights", "dtrain scales attention scores by 1/sqrt(head size)");
  const std::optional<int64_t> n_embd = chk.integer("n_embd", 768), n_layer = chk.integer("n_layer", 12),
                               n_head = chk.integer("n_head", 12), n_pos = chk.integer("n_positions", 1024),
                               vocab = chk.integer("vocab_size", kGpt2Ids),
                               n_inner = chk.integer("n_inner", 4 * n_embd.value_or(cfg.n_embd));
  if (n_embd && n_inner && *n_inner != 4 * *n_embd)
    chk.refuse("n_inner", fmt::format("dtrain's MLP is 4 x n_embd = {} wide", 4 * *n_embd));
  chk.same("n_embd", n_embd, "model.n_embd", cfg.n_embd);
  chk.same("n_layer", n_layer, "model.n_layer", cfg.n_layer);
  chk.same("n_head", n_head, "model.n_head", cfg.n_head);
  if (n_pos && *n_pos < cfg.context_length)
    problems.push_back(fmt::format("{}: n_positions = {} but model.context_length = {}: at most {} positions "
                                   "can be imported", cfg_name, *n_pos, cfg.context_length, *n_pos));
  if (vocab && *vocab > cfg.vocab_size)
    problems.push_back(fmt::format("{}: vocab_size = {} but model.vocab_size = {}: set model.vocab_size to at "
                                   "least {} (e.g. 50304 for GPT-2, a multiple of 64)",
                                   cfg_name, *vocab, cfg.vocab_size, *vocab));
  // The token ids must mean what the run's data means: a dtrain export says
  // its tokenizer; a vocabulary of exactly GPT-2's is GPT-2's BPE.
  if (!tokenizer.empty()) {
    std::string source;
    if (hc.contains("dtrain_tokenizer") && hc["dtrain_tokenizer"].is_string())
      source = hc["dtrain_tokenizer"].get<std::string>();
    else if (vocab && *vocab == kGpt2Ids)
      source = "gpt2";
    if (!source.empty() && source != tokenizer)
      problems.push_back(fmt::format(
          "{}: its token ids are {} ({}) but the run's data.tokenizer = \"{}\": every embedding row would stand for "
          "another token; train on data of its tokenizer (data.tokenizer = \"{}\")",
          cfg_name, source == "gpt2" ? "GPT-2's BPE" : source == "byte" ? "UTF-8 bytes" : "\"" + source + "\"",
          hc.contains("dtrain_tokenizer") && hc["dtrain_tokenizer"].is_string() ? "dtrain_tokenizer" : "vocab_size 50257",
          tokenizer, source));
  }
  if (!problems.empty()) throw ConfigError(problems);

  const SafetensorsFile st = [&] {
    try {
      return SafetensorsFile((fs::path(dir) / "model.safetensors").string());
    } catch (const InputError& e) {  // said as the key that named it, as the config.json problems are
      throw InputError("model.init_from: " + std::string(e.what()));
    }
  }();
  // Names with or without the "transformer." prefix; the causal-mask buffers
  // older exports carry are skipped.
  std::map<std::string, const SafeTensorInfo*> by_name;
  const SafeTensorInfo* lm_head = nullptr;
  const std::vector<std::string> known = hf_names(*n_layer);
  const std::set<std::string> known_set(known.begin(), known.end());
  for (const auto& t : st.tensors()) {
    std::string n = starts_with(t.name, "transformer.") ? t.name.substr(12) : t.name;
    if (n == "lm_head.weight") {
      lm_head = &t;
      continue;
    }
    const bool mask = n.size() > 10 && (n.substr(n.size() - 10) == ".attn.bias" ||
                                        (n.size() > 17 && n.substr(n.size() - 17) == ".attn.masked_bias"));
    if (mask) continue;
    if (!known_set.count(n))
      problems.push_back(fmt::format("{}: tensor '{}' has no place in dtrain's GPT", st.path(), t.name));
    by_name[n] = &t;
  }
  for (const std::string& n : known)
    if (!by_name.count(n)) problems.push_back(fmt::format("{}: tensor 'transformer.{}' is missing", st.path(), n));
  if (!problems.empty()) throw ConfigError(problems);

  auto read = [&](const std::string& n, std::vector<int64_t> want) {
    const SafeTensorInfo& t = *by_name.at(n);
    if (t.shape != want)
      throw ConfigError(fmt::format("{}: tensor '{}' has shape ({}), expected ({})", st.path(), t.name,
                                    fmt::join(t.shape, ", "), fmt::join(want, ", ")));
    std::vector<float> v = st.read_f32(t);
    // A NaN or infinity would train to NaN a step later: refused here, where the file is known.
    if (const auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); }); bad != v.end())
      throw ConfigError(fmt::format("{}: tensor '{}' holds {} at element {} of {}: not weights to train from",
                                    st.path(), t.name, *bad, bad - v.begin(), v.size()));
    return v;
  };
  const int64_t C = cfg.n_embd;
  if (lm_head) {  // a separate head must be the tied one
    if (lm_head->shape != std::vector<int64_t>{*vocab, C} || st.read_f32(*lm_head) != read("wte.weight", {*vocab, C}))
      throw ConfigError(fmt::format("{}: tensor '{}' differs from the token embedding: an untied output head, "
                                    "which dtrain's GPT (tied to wte) cannot express",
                                    st.path(), lm_head->name));
  }
  if (!cfg.bias)
    for (const auto& [n, t] : by_name)
      if (n.size() > 5 && n.substr(n.size() - 5) == ".bias")
        for (float x : st.read_f32(*t))
          if (x != 0.0f)
            throw ConfigError(fmt::format("{}: tensor '{}' is not zero but model.bias = false: set model.bias = true",
                                          st.path(), t->name));
  if (*vocab < cfg.vocab_size)
    notes.push_back(hf_detail::padded_vocab_note(cfg, *vocab, dir));
  if (*n_pos > cfg.context_length)
    notes.push_back(fmt::format("positions: the first {} of {}'s {} (model.context_length)", cfg.context_length,
                                dir, *n_pos));

  for (const auto& p : model.params.all()) {
    const HfName h = hf_name(p->name);
    const Shape full = p->shard.split() ? p->shard.full : p->shape;
    std::vector<float> v;
    if (p->name == "wte.weight") {
      v = read(h.name, {*vocab, C});
      v.resize(full.numel(), 0.0f);  // padding rows
    } else if (p->name == "wpe.weight") {
      v = read(h.name, {*n_pos, C});
      v.resize(full.numel());
    } else if (h.transposed) {
      v = transpose(read(h.name, {full[1], full[0]}), full[1], full[0]);
    } else {
      v = read(h.name, {full.begin(), full.end()});
    }
    sink(*p, v);
  }
  return notes;
}

}  // namespace

std::vector<std::string> import_hf(Model& model, const ModelConfig& cfg, const std::string& dir,
                                   const std::string& tokenizer, const ParamSink& sink) {
  const json hc = read_config_json(dir, "model.init_from's config.json (JSON)", "model.init_from: ");
  const ParamSink put = sink ? sink : ParamSink(hf_detail::set_from_full);
  std::vector<std::string> notes = hf_detail::is_llama(hc)
                                       ? hf_detail::import_llama(model, cfg, dir, hc, tokenizer, put)
                                       : import_gpt2(model, cfg, dir, hc, tokenizer, put);
  if (!sink) model.params.sync_compute();  // the bf16 compute copy of the imported masters
  return notes;
}

}  // namespace dtrain

namespace dtrain {

void derive_used_vocab(ModelConfig& cfg) {
  if (cfg.vocab_used != 0 || !starts_with(cfg.init_from, "hf:")) return;
  try {
    const json hc = read_config_json(cfg.init_from.substr(3), "model.init_from's config.json (JSON)", "");
    const auto v = hc.find("vocab_size");
    if (v != hc.end() && v->is_number_integer() && v->get<int64_t>() > 0 && v->get<int64_t>() < cfg.vocab_size)
      cfg.vocab_used = v->get<int64_t>();
  } catch (const InputError&) {
    // init_from_problems / import_hf name it
  }
}

std::vector<std::string> init_from_problems(const ModelConfig& cfg) {
  if (cfg.init_from.empty()) return {};
  if (!starts_with(cfg.init_from, "hf:"))
    return {fmt::format("model.init_from: expected \"hf:DIR\", got \"{}\"", cfg.init_from)};
  if (const std::string why = parts_problem(cfg); !why.empty())
    return {fmt::format("model.init_from = \"{}\" with {}", cfg.init_from, why)};
  const fs::path dir = cfg.init_from.substr(3);
  std::vector<std::string> missing;
  std::error_code ec;
  // The files there (one line for both); what they hold import_hf reads (and
  // refuses) at the run's start.
  for (const char* name : {"config.json", "model.safetensors"}) {
    // A sharded LLaMA: the index names the shards instead (checked when read).
    if (std::string(name) == "model.safetensors" && !fs::exists(dir / name, ec) &&
        fs::is_regular_file(dir / "model.safetensors.index.json", ec))
      continue;
    const fs::file_status st = fs::status(dir / name, ec);
    if (fs::is_regular_file(st)) continue;
    const std::string what = !fs::exists(st)     ? "not found"
                             : fs::is_directory(st) ? "a directory, not a file"
                             : fs::is_fifo(st)      ? "a FIFO, not a regular file"
                                                    : "a device or socket, not a regular file";
    missing.push_back(fmt::format("'{}': {}", (dir / name).string(), what));
  }
  if (missing.empty()) return {};
  return {fmt::format("model.init_from: {} (a Hugging Face directory holds config.json and model.safetensors, "
                      "or LLaMA's shards and model.safetensors.index.json)",
                      fmt::join(missing, "; "))};
}

std::vector<std::string> apply_init_from(Model& model, const ModelConfig& cfg, const std::string& tokenizer,
                                         const ParamSink& sink) {
  if (cfg.init_from.empty()) return {};
  if (!starts_with(cfg.init_from, "hf:"))
    throw ConfigError(fmt::format("model.init_from: expected \"hf:DIR\", got \"{}\"", cfg.init_from));
  const std::string dir = cfg.init_from.substr(3);
  std::vector<std::string> lines = {fmt::format("init: parameters from the Hugging Face directory {}", dir)};
  for (const std::string& n : import_hf(model, cfg, dir, tokenizer, sink)) lines.push_back("init: " + n);
  return lines;
}

}  // namespace dtrain
