// Hugging Face LLaMA directories (LlamaForCausalLM) in and out of a dtrain
// GPT of LLaMA's parts (model.norm = "rmsnorm", mlp = "swiglu", position =
// "rope", bias = false). The two compute the same function: RMSNorm with eps
// 1e-5, rotary embeddings paired as modeling_llama.py's rotate_half pairs
// them (Hugging Face's q_proj and k_proj rows are already in that order),
// down(silu(gate(x)) * up(x)), causal attention scaled by 1/sqrt(head size),
// the head tied to the embedding or not (tie_word_embeddings). Linear weights
// are (out, in) in both; what differs is naming and fusion:
//   dtrain                      Hugging Face
//   wte.weight (V, C)           model.embed_tokens.weight
//   blocks.i.ln1.weight         model.layers.i.input_layernorm.weight
//   blocks.i.attn.qkv.weight    model.layers.i.self_attn.{q,k,v}_proj.weight, stacked
//   blocks.i.attn.proj.weight   model.layers.i.self_attn.o_proj.weight
//   blocks.i.ln2.weight         model.layers.i.post_attention_layernorm.weight
//   blocks.i.mlp.fc.weight      model.layers.i.mlp.{gate,up}_proj.weight, stacked
//   blocks.i.mlp.proj.weight    model.layers.i.mlp.down_proj.weight
//   ln_f.weight                 model.norm.weight
//   lm_head.weight              lm_head.weight (absent when tied)
// Grouped-query attention (num_key_value_heads < num_attention_heads) is
// model.n_kv_head: k_proj and v_proj are num_key_value_heads heads tall, and
// the qkv rows stack q, k, v as they are. LLaMA 3.1's rope scaling (rope_type
// "llama3") is model.rope_scaling; other scalings (YaRN, linear, dynamic),
// biases, another activation or norm eps are refused,
// naming the config.json key. Weights are read from model.safetensors or
// from the shards model.safetensors.index.json names (any float dtype);
// written as one F32 model.safetensors.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "checkpoint/hf_internal.h"
#include "checkpoint/safetensors.h"
#include "config/schema.h"
#include "core/error.h"
#include "core/file_kind.h"

namespace dtrain::hf_detail {

namespace fs = std::filesystem;

namespace {

constexpr double kRmsEps = 1e-5;  // model/layernorm.h's kEps

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// A directory's tensors: model.safetensors, or the shards that
// model.safetensors.index.json's weight_map names (each opened once).
class HfWeights {
 public:
  explicit HfWeights(const std::string& dir) {
    const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(single) || !fs::exists(index)) {
      files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
      for (const SafeTensorInfo& t : files_[0]->tensors()) where_[t.name] = {files_[0].get(), &t};
      return;
    }
    require_regular_file(index.string(), "a Hugging Face weight index (JSON)");
    std::ifstream in(index);
    json ix;
    try {
      ix = json::parse(in);
    } catch (const json::exception& e) {
      throw InputError(fmt::format("'{}': not valid JSON: {}", index.string(), e.what()));
    }
    if (!ix.is_object() || !ix.contains("weight_map") || !ix["weight_map"].is_object())
      throw InputError(fmt::format("'{}': expected an object with a \"weight_map\" object", index.string()));
    std::map<std::string, SafetensorsFile*> opened;
    for (const auto& [name, file] : ix["weight_map"].items()) {
      // A shard's file name, in this directory: no path of its own.
      if (!file.is_string() || file.get<std::string>().empty() ||
          file.get<std::string>().find('/') != std::string::npos || file.get<std::string>() == "..")
        throw InputError(fmt::format("'{}': weight_map[\"{}\"] = {}: expected a file name in {}", index.string(),
                                     name, file.dump(), dir));
      const std::string f = file.get<std::string>();
      if (!opened.count(f)) {
        files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / f).string()));
        opened[f] = files_.back().get();
      }
      const SafeTensorInfo* t = opened[f]->find(name);
      if (!t)
        throw InputError(fmt::format("'{}': weight_map names '{}' in {}, which does not hold it", index.string(),
                                     name, opened[f]->path()));
      where_[name] = {opened[f], t};
    }
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [n, w] : where_) out.push_back(n);
    return out;
  }
  bool has(const std::string& n) const { return where_.count(n) > 0; }
  const SafeTensorInfo& info(const std::string& n) const { return *where_.at(n).second; }
  const std::string& path(const std::string& n) const { return where_.at(n).first->path(); }
  std::vector<float> read(const std::string& n) const { return where_.at(n).first->read_f32(*where_.at(n).second); }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const SafeTensorInfo*>> where_;
};

// Hugging Face's names of layer i's tensors, in dtrain's order of each fused one.
std::string layer_name(int64_t i, const char* part) { return fmt::format("model.layers.{}.{}.weight", i, part); }
const char* const kQkv[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
const char* const kGateUp[] = {"mlp.gate_proj", "mlp.up_proj"};

// The Hugging Face tensors of dtrain parameter `name` (stacked in this order), e.g.
// "blocks.3.attn.qkv.weight" -> q, k, v of model.layers.3.
std::vector<std::string> hf_parts(const std::string& name) {
  if (name == "wte.weight") return {"model.embed_tokens.weight"};
  if (name == "ln_f.weight") return {"model.norm.weight"};
  if (name == "lm_head.weight") return {"lm_head.weight"};
  if (starts_with(name, "blocks.")) {
    const size_t dot = name.find('.', 7);
    const int64_t i = std::stoll(name.substr(7, dot - 7));
    const std::string rest = name.substr(dot + 1);
    if (rest == "ln1.weight") return {layer_name(i, "input_layernorm")};
    if (rest == "ln2.weight") return {layer_name(i, "post_attention_layernorm")};
    if (rest == "attn.qkv.weight") return {layer_name(i, kQkv[0]), layer_name(i, kQkv[1]), layer_name(i, kQkv[2])};
    if (rest == "attn.proj.weight") return {layer_name(i, "self_attn.o_proj")};
    if (rest == "mlp.fc.weight") return {layer_name(i, kGateUp[0]), layer_name(i, kGateUp[1])};
    if (rest == "mlp.proj.weight") return {layer_name(i, "mlp.down_proj")};
  }
  throw InternalError(fmt::format("parameter '{}' has no Hugging Face LLaMA name", name));
}

// The rows of each of hf_parts(name) in dtrain parameter `name` of `rows`
// rows: q, k and v of the fused qkv (k and v n_kv_head heads each), equal
// parts otherwise.
std::vector<int64_t> hf_part_rows(const std::string& name, int64_t rows, const ModelConfig& m) {
  const size_t n = hf_parts(name).size();
  if (ends_with(name, ".attn.qkv.weight")) {
    const int64_t ckv = m.n_embd / m.n_head * m.kv_heads();
    return {m.n_embd, ckv, ckv};
  }
  return std::vector<int64_t>(n, rows / static_cast<int64_t>(n));
}

}  // namespace

bool is_llama(const json& hc) { return hc.contains("model_type") && hc["model_type"] == "llama"; }

namespace {

// config.json's rope_scaling: null (or absent) or {"rope_type": "default"},
// or LLaMA 3.1's {"rope_type" (or
// the older "type"): "llama3", factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings}, read into `m`'s keys. Another type, or a
// field missing or out of range: "" and `why` says what was expected.
bool read_rope_scaling(const json& hc, ModelConfig& m, std::string& why) {
  if (!hc.contains("rope_scaling") || hc["rope_scaling"].is_null()) {
    m.rope_scaling = "none";
    return true;
  }
  const json& r = hc["rope_scaling"];
  const json type = !r.is_object() ? json() : r.contains("rope_type") ? r["rope_type"] : r.value("type", json());
  // transformers' "default" rope_type is no scaling (its other fields unread).
  if (type == "default") {
    m.rope_scaling = "none";
    return true;
  }
  if (type != "llama3") {
    why = "dtrain scales rotary embeddings as LLaMA 3.1 does (rope_type \"llama3\") or not at all (no YaRN, "
          "linear or dynamic scaling)";
    return false;
  }
  // A number of at least `least` (`strict`: above it).
  auto number = [&](const char* key, double& out, double least, bool strict) {
    const bool ok = r.contains(key) && r[key].is_number() &&
                    (strict ? r[key].get<double>() > least : r[key].get<double>() >= least);
    if (!ok) {
      why = fmt::format("rope_type \"llama3\" needs {}, a number {} {}", key, strict ? "above" : "of at least", least);
      return false;
    }
    out = r[key].get<double>();
    return true;
  };
  double original = 0;
  if (!number("factor", m.rope_factor, 1, false) || !number("low_freq_factor", m.rope_low_freq_factor, 0, true) ||
      !number("high_freq_factor", m.rope_high_freq_factor, 0, true) ||
      !number("original_max_position_embeddings", original, 0, true))
    return false;
  if (original != std::floor(original)) {
    why = "rope_type \"llama3\" needs original_max_position_embeddings, a whole number";
    return false;
  }
  m.rope_scaling = "llama3";
  m.rope_original_context = static_cast<int64_t>(original);
  return true;
}

json rope_scaling_json(const ModelConfig& m) {
  if (m.rope_scaling != "llama3") return nullptr;
  return {{"rope_type", "llama3"},
          {"factor", m.rope_factor},
          {"low_freq_factor", m.rope_low_freq_factor},
          {"high_freq_factor", m.rope_high_freq_factor},
          {"original_max_position_embeddings", m.rope_original_context}};
}

}  // namespace

std::string llama_parts_problem(const ModelConfig& m) {
  std::vector<std::string> keys;
  if (!m.rms_norm()) keys.push_back(fmt::format("model.norm = \"{}\"", m.norm));
  if (!m.swiglu()) keys.push_back(fmt::format("model.mlp = \"{}\"", m.mlp));
  if (!m.rope()) keys.push_back(fmt::format("model.position = \"{}\"", m.position));
  if (m.bias) keys.push_back("model.bias = true");
  if (keys.empty()) return "";
  return fmt::format("{}: LLaMA's format (LlamaForCausalLM) holds LLaMA's parts only (rmsnorm, swiglu, rope, no "
                     "biases)",
                     fmt::join(keys, ", "));
}

HfExportResult export_llama(const Model& model, const Config& cfg, const std::string& out_dir, int64_t V,
                            HfExportResult r) {
  const ModelConfig& m = cfg.model;
  const int64_t C = m.n_embd, F = m.ffn_width();
  std::vector<SafeTensorOut> out;
  for (const auto& p : model.params.all()) {
    if (!p->primary) continue;
    DTRAIN_CHECK(!p->shard.split() && p->value.dtype() == DType::f32,
                 "export needs the whole fp32 model; {} is a shard or not fp32", p->name);
    const std::vector<std::string> parts = hf_parts(p->name);
    const float* v = p->value.data<float>();
    int64_t rows = p->shape[0];
    if (p->name == "wte.weight" || p->name == "lm_head.weight") rows = V;  // padding rows cut
    const int64_t cols = p->shape.rank() == 2 ? p->shape[1] : 1;
    const std::vector<int64_t> part_rows = hf_part_rows(p->name, rows, m);
    int64_t first = 0;
    for (size_t k = 0; k < parts.size(); ++k) {
      const int64_t each = part_rows[k];
      const float* from = v + first * cols;
      std::vector<int64_t> shape = p->shape.rank() == 2 ? std::vector<int64_t>{each, cols} : std::vector<int64_t>{each};
      out.push_back({parts[k], shape, std::vector<float>(from, from + each * cols)});
      first += each;
    }
    DTRAIN_CHECK(first == rows, "{}: {} rows in parts of {}", p->name, rows, fmt::join(part_rows, ", "));
  }
  json c = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"vocab_size", V},
            {"hidden_size", C},
            {"intermediate_size", F},
            {"num_hidden_layers", m.n_layer},
            {"num_attention_heads", m.n_head},
            {"num_key_value_heads", m.kv_heads()},
            {"head_dim", C / m.n_head},
            {"max_position_embeddings", m.context_length},
            {"rms_norm_eps", kRmsEps},
            {"rope_theta", m.rope_theta},
            {"rope_scaling", rope_scaling_json(m)},
            {"hidden_act", "silu"},
            {"attention_bias", false},
            {"mlp_bias", false},
            {"attention_dropout", 0.0},
            {"initializer_range", 0.02},
            {"tie_word_embeddings", m.tie_embeddings},
            {"torch_dtype", "float32"},
            {"use_cache", true},
            {"dtrain_tokenizer", cfg.data.tokenizer}};
  return write_hf_dir(out_dir, std::move(c), out, std::move(r));
}

std::vector<std::string> llama_model_overrides(const std::string& dir, const json& hc) {
  const std::string cfg_name = (fs::path(dir) / "config.json").string();
  auto integer = [&](const char* key, int64_t dflt) {  // LlamaConfig's default where absent
    if (!hc.contains(key) || hc[key].is_null()) return dflt;
    if (!hc[key].is_number_integer() || hc[key].get<int64_t>() < 1)
      throw ConfigError(fmt::format("{}: {}: expected a positive integer, got {}", cfg_name, key, hc[key].dump()));
    return hc[key].get<int64_t>();
  };
  double theta = 10000;
  if (hc.contains("rope_theta") && !hc["rope_theta"].is_null()) {
    if (!hc["rope_theta"].is_number() || !(hc["rope_theta"].get<double>() > 1))
      throw ConfigError(fmt::format("{}: rope_theta: expected a number above 1, got {}", cfg_name,
                                    hc["rope_theta"].dump()));
    theta = hc["rope_theta"].get<double>();
  }
  const bool tied = hc.contains("tie_word_embeddings") && hc["tie_word_embeddings"] == true;
  std::vector<std::string> keys = {
      "model.norm=\"rmsnorm\"", "model.mlp=\"swiglu\"", "model.position=\"rope\"", "model.bias=false",
      fmt::format("model.n_embd={}", integer("hidden_size", 4096)),
      fmt::format("model.n_layer={}", integer("num_hidden_layers", 32)),
      fmt::format("model.n_head={}", integer("num_attention_heads", 32)),
      fmt::format("model.n_kv_head={}", integer("num_key_value_heads", integer("num_attention_heads", 32))),
      fmt::format("model.ffn_hidden={}", integer("intermediate_size", 11008)),
      fmt::format("model.context_length={}", integer("max_position_embeddings", 2048)),
      fmt::format("model.vocab_size={}", integer("vocab_size", 32000)),
      fmt::format("model.rope_theta={}", theta),
      fmt::format("model.tie_embeddings={}", tied),
      "model.init_from=" + config::toml_string("hf:" + dir)};
  std::string why;
  if (ModelConfig scaled; !read_rope_scaling(hc, scaled, why)) {
    throw ConfigError(fmt::format("{}: rope_scaling = {}: {}", cfg_name, hc["rope_scaling"].dump(), why));
  } else if (scaled.rope_scaling == "llama3") {
    keys.push_back("model.rope_scaling=\"llama3\"");
    keys.push_back(fmt::format("model.rope_factor={}", scaled.rope_factor));
    keys.push_back(fmt::format("model.rope_low_freq_factor={}", scaled.rope_low_freq_factor));
    keys.push_back(fmt::format("model.rope_high_freq_factor={}", scaled.rope_high_freq_factor));
    keys.push_back(fmt::format("model.rope_original_context={}", scaled.rope_original_context));
  }
  // The ids' tokenizer: what a dtrain export says it trained on, else the
  // directory's own tokenizer.json (a LLaMA from the Hub, a dtrain export of
  // a run on a Hugging Face tokenizer).
  std::error_code ec;
  const bool has_json = fs::is_regular_file(fs::path(dir) / "tokenizer.json", ec);
  std::string tokenizer = has_json ? "hf" : "";
  if (hc.contains("dtrain_tokenizer") && hc["dtrain_tokenizer"].is_string())
    tokenizer = hc["dtrain_tokenizer"].get<std::string>();
  if (!tokenizer.empty()) keys.push_back("data.tokenizer=" + config::toml_string(tokenizer));
  if (tokenizer == "hf") keys.push_back("data.tokenizer_dir=" + config::toml_string(dir));
  return keys;
}

std::vector<std::string> import_llama(Model& model, const ModelConfig& cfg, const std::string& dir, const json& hc,
                                      const std::string& tokenizer, const ParamSink& sink) {
  std::vector<std::string> notes;
  const std::string cfg_name = (fs::path(dir) / "config.json").string();
  if (const std::string why = llama_parts_problem(cfg); !why.empty())
    throw ConfigError(fmt::format("{}: model_type = \"llama\" but {}", cfg_name, why));
  ConfigJsonChecks chk{hc, cfg_name, {}};  // LlamaConfig's defaults where a key is absent
  std::vector<std::string>& problems = chk.problems;
  std::string why_scaling;
  if (hc.value("hidden_act", std::string("silu")) != "silu")
    chk.refuse("hidden_act", "dtrain's SwiGLU gates with silu");
  // LlamaConfig's default eps is 1e-6; LLaMA 2 and 3 set 1e-5.
  if (!hc.contains("rms_norm_eps") || !hc["rms_norm_eps"].is_number() ||
      std::abs(hc["rms_norm_eps"].get<double>() - kRmsEps) > 1e-12)
    chk.refuse("rms_norm_eps", "dtrain's RMSNorm uses eps 1e-5");
  if (ModelConfig scaled; !read_rope_scaling(hc, scaled, why_scaling))
    chk.refuse("rope_scaling", why_scaling);
  else if (scaled.rope_scaling != cfg.rope_scaling || (scaled.rope_scaling == "llama3" &&
                                                       (scaled.rope_factor != cfg.rope_factor ||
                                                        scaled.rope_low_freq_factor != cfg.rope_low_freq_factor ||
                                                        scaled.rope_high_freq_factor != cfg.rope_high_freq_factor ||
                                                        scaled.rope_original_context != cfg.rope_original_context)))
    problems.push_back(fmt::format("{}: rope_scaling = {} but the model's is {}: set model.rope_scaling{} to import it",
                                   cfg_name, hc.contains("rope_scaling") ? hc["rope_scaling"].dump() : "null",
                                   rope_scaling_json(cfg).dump(),
                                   scaled.rope_scaling == "llama3"
                                       ? fmt::format(" = \"llama3\", rope_factor = {}, rope_low_freq_factor = {}, "
                                                     "rope_high_freq_factor = {}, rope_original_context = {}",
                                                     scaled.rope_factor, scaled.rope_low_freq_factor,
                                                     scaled.rope_high_freq_factor, scaled.rope_original_context)
                                       : " = \"none\""));
  // transformers rotates the first partial_rotary_factor of each head's
  // dimensions (its default rope parameters read it for any model type).
  if (hc.contains("partial_rotary_factor") && !hc["partial_rotary_factor"].is_null() &&
      !(hc["partial_rotary_factor"].is_number() && hc["partial_rotary_factor"].get<double>() == 1.0))
    chk.refuse("partial_rotary_factor", "dtrain's rotary embedding turns every dimension of a head (1.0)");
  for (const char* flag : {"attention_bias", "mlp_bias"})
    if (hc.contains(flag) && hc[flag] == true) chk.refuse(flag, "dtrain's LLaMA blocks have no biases");
  const std::optional<int64_t> C = chk.integer("hidden_size", 4096), L = chk.integer("num_hidden_layers", 32),
                               nh = chk.integer("num_attention_heads", 32), F = chk.integer("intermediate_size", 11008),
                               vocab = chk.integer("vocab_size", 32000),
                               n_pos = chk.integer("max_position_embeddings", 2048),
                               nkv = chk.integer("num_key_value_heads", nh.value_or(cfg.n_head));
  if (nh && nkv && *nh % *nkv != 0)
    chk.refuse("num_key_value_heads", fmt::format("each key/value head serves a whole group of query heads, and {} "
                                                  "does not divide num_attention_heads = {}",
                                                  *nkv, *nh));
  else
    chk.same("num_key_value_heads", nkv, "model.n_kv_head", cfg.kv_heads());
  if (C && nh && hc.contains("head_dim") && !hc["head_dim"].is_null() && hc["head_dim"] != *C / *nh)
    chk.refuse("head_dim",
               fmt::format("dtrain's heads are hidden_size / num_attention_heads = {} wide", *C / *nh));
  chk.same("hidden_size", C, "model.n_embd", cfg.n_embd);
  chk.same("num_hidden_layers", L, "model.n_layer", cfg.n_layer);
  chk.same("num_attention_heads", nh, "model.n_head", cfg.n_head);
  chk.same("intermediate_size", F, "model.ffn_hidden", cfg.ffn_width());
  double theta = 10000;  // LlamaConfig's default
  bool theta_ok = true;
  if (hc.contains("rope_theta") && !hc["rope_theta"].is_null()) {
    theta_ok = hc["rope_theta"].is_number() && hc["rope_theta"].get<double>() > 1;
    if (theta_ok)
      theta = hc["rope_theta"].get<double>();
    else
      chk.refuse("rope_theta", "expected a number above 1");
  }
  if (theta_ok && theta != cfg.rope_theta)
    problems.push_back(fmt::format("{}: rope_theta = {} but model.rope_theta = {}: set model.rope_theta = {} to "
                                   "import it",
                                   cfg_name, theta, cfg.rope_theta, theta));
  const bool tied = hc.contains("tie_word_embeddings") && hc["tie_word_embeddings"] == true;
  if (tied != cfg.tie_embeddings)
    problems.push_back(fmt::format("{}: tie_word_embeddings = {} but model.tie_embeddings = {}: set "
                                   "model.tie_embeddings = {} to import it",
                                   cfg_name, tied, cfg.tie_embeddings, tied));
  if (vocab && *vocab > cfg.vocab_size)
    problems.push_back(fmt::format("{}: vocab_size = {} but model.vocab_size = {}: set model.vocab_size to at "
                                   "least {}",
                                   cfg_name, *vocab, cfg.vocab_size, *vocab));
  if (!tokenizer.empty() && hc.contains("dtrain_tokenizer") && hc["dtrain_tokenizer"].is_string() &&
      hc["dtrain_tokenizer"].get<std::string>() != tokenizer)
    problems.push_back(fmt::format("{}: its token ids are \"{}\" (dtrain_tokenizer) but the run's data.tokenizer = "
                                   "\"{}\": every embedding row would stand for another token",
                                   cfg_name, hc["dtrain_tokenizer"].get<std::string>(), tokenizer));
  if (!problems.empty()) throw ConfigError(problems);

  const HfWeights w = [&] {
    try {
      return HfWeights(dir);
    } catch (const InputError& e) {  // said as the key that named it, as the config.json problems are
      throw InputError("model.init_from: " + std::string(e.what()));
    }
  }();
  std::set<std::string> known = {"model.embed_tokens.weight", "model.norm.weight"};
  if (!tied) known.insert("lm_head.weight");
  for (int64_t i = 0; i < *L; ++i)
    for (const char* part : {"input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                             "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      known.insert(layer_name(i, part));
  for (const std::string& n : w.names()) {
    if (ends_with(n, ".rotary_emb.inv_freq")) continue;  // a buffer older exports carry
    if (n == "lm_head.weight" && tied) continue;         // checked against the embedding below
    if (!known.count(n)) problems.push_back(fmt::format("{}: tensor '{}' has no place in dtrain's GPT", w.path(n), n));
  }
  for (const std::string& n : known)
    if (!w.has(n)) problems.push_back(fmt::format("{}: tensor '{}' is missing", dir, n));
  if (!problems.empty()) throw ConfigError(problems);

  auto read = [&](const std::string& n, std::vector<int64_t> want) {
    const SafeTensorInfo& t = w.info(n);
    if (t.shape != want)
      throw ConfigError(fmt::format("{}: tensor '{}' has shape ({}), expected ({})", w.path(n), n,
                                    fmt::join(t.shape, ", "), fmt::join(want, ", ")));
    std::vector<float> v = w.read(n);
    if (const auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); }); bad != v.end())
      throw ConfigError(fmt::format("{}: tensor '{}' holds {} at element {} of {}: not weights to train from",
                                    w.path(n), n, *bad, bad - v.begin(), v.size()));
    return v;
  };
  if (tied && w.has("lm_head.weight") &&
      read("lm_head.weight", {*vocab, *C}) != read("model.embed_tokens.weight", {*vocab, *C}))
    throw ConfigError(fmt::format("{}: tensor 'lm_head.weight' differs from the token embedding but "
                                  "tie_word_embeddings = true",
                                  w.path("lm_head.weight")));
  if (*vocab < cfg.vocab_size)
    notes.push_back(hf_detail::padded_vocab_note(cfg, *vocab, dir));
  if (*n_pos < cfg.context_length)
    notes.push_back(fmt::format("positions: model.context_length = {} is beyond the {} max_position_embeddings "
                                "{} was trained for",
                                cfg.context_length, *n_pos, dir));

  for (const auto& p : model.params.all()) {
    const Shape full = p->shard.split() ? p->shard.full : p->shape;
    const std::vector<std::string> parts = hf_parts(p->name);
    std::vector<float> v;
    if (p->name == "wte.weight" || p->name == "lm_head.weight") {
      v = read(parts[0], {*vocab, *C});
      v.resize(full.numel(), 0.0f);  // padding rows
    } else {
      const std::vector<int64_t> part_rows = hf_part_rows(p->name, full[0], cfg);
      for (size_t k = 0; k < parts.size(); ++k) {
        const int64_t each = part_rows[k];
        const std::vector<float> piece =
            read(parts[k], full.rank() == 2 ? std::vector<int64_t>{each, full[1]} : std::vector<int64_t>{each});
        v.insert(v.end(), piece.begin(), piece.end());
      }
    }
    sink(*p, v);
  }
  return notes;
}

}  // namespace dtrain::hf_detail
