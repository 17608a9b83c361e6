// Hugging Face directories (config.json + model.safetensors), in and out of
// dtrain's GPT: GPT-2's (GPT2LMHeadModel, below) for a GPT of GPT-2's parts,
// LLaMA's (LlamaForCausalLM, model_type "llama": hf_llama.cpp says how) for
// one of LLaMA's (RMSNorm, SwiGLU, rope, no biases); a mix of the two has
// no Hugging Face format and is refused, naming the keys.
//
// GPT-2: the two models compute the same function: pre-norm
// blocks, layer norm eps 1e-5, GELU with the tanh approximation ("gelu_new"),
// causal attention scaled by 1/sqrt(head size), the head tied to wte. What
// differs is naming and layout:
//   dtrain                     Hugging Face (GPT2LMHeadModel)
//   wte.weight (V, C)          transformer.wte.weight (V, C)
//   wpe.weight (T, C)          transformer.wpe.weight (n_positions, C)
//   blocks.i.ln1.*             transformer.h.i.ln_1.*
//   blocks.i.attn.qkv.weight   transformer.h.i.attn.c_attn.weight
//   blocks.i.attn.proj.weight  transformer.h.i.attn.c_proj.weight
//   blocks.i.ln2.*             transformer.h.i.ln_2.*
//   blocks.i.mlp.fc.weight     transformer.h.i.mlp.c_fc.weight
//   blocks.i.mlp.proj.weight   transformer.h.i.mlp.c_proj.weight
//   ln_f.*                     transformer.ln_f.*
// GPT-2's Conv1D stores a weight as (in, out), dtrain's Linear as (out, in):
// the four projection weights are transposed; the fused q|k|v order and the
// head order inside each are the same. Vocabulary padding (50257 GPT-2 ids
// in a 50304-row wte, a multiple that suits tensor parallelism) is cut on
// export and added back as zero rows on import, and said.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/error.h"
#include "model/model.h"

namespace dtrain {

class Tokenizer;

// The Hugging Face name of a dtrain parameter (without "transformer."), and
// whether its layout is transposed there. Throws InternalError for a name
// that is not a GPT parameter.
struct HfName {
  std::string name;
  bool transposed = false;
};
HfName hf_name(const std::string& dtrain_name);

struct HfExportResult {
  int64_t bytes = 0;               // of model.safetensors
  int64_t tensors = 0;
  std::vector<std::string> notes;  // what was adapted (vocabulary cut, zero biases)
  int32_t bos = -1, eos = -1;      // config.json's bos_token_id and eos_token_id (-1: null)
};

// Writes `out_dir`/config.json and `out_dir`/model.safetensors from a whole
// (unsharded, fp32) GPT and its run's config. `vocab_size` rows of wte are
// written: 0 = the tokenizer's ids (50257 for gpt2) when the model pads
// beyond them, else all of them. Throws ConfigError for a model that is not
// a GPT or a `vocab_size` below the tokenizer's ids (256 bytes, 50257 for
// gpt2, the tokenizer's for hf: rows that are not padding), RuntimeError when
// the files cannot be written.
// A run on a Hugging Face tokenizer (data.tokenizer = "hf") passes it as
// `tokenizer`: its ids are the rows that are not padding, and its
// begin- and end-of-text ids are config.json's bos_token_id and eos_token_id.
HfExportResult export_hf(const Model& model, const Config& cfg, const std::string& out_dir,
                         int64_t vocab_size = 0, const Tokenizer* tokenizer = nullptr);

// Fills every parameter this rank holds (its tensor-parallel shard, its
// pipeline stage) from the Hugging Face directory `dir` (GPT-2's, or LLaMA's
// by config.json's model_type), whose config
// must match `cfg`'s shapes. Returns what was adapted (vocabulary padding,
// fewer positions), one line each. Throws ConfigError naming the config.json
// key or tensor for a model dtrain's GPT cannot express (another activation,
// an untied head, a missing tensor, other shapes, a value that is not finite)
// and for token ids of another tokenizer than the run's `tokenizer`
// (data.tokenizer; "" = not checked): config.json's dtrain_tokenizer where a
// dtrain export wrote it, else GPT-2's BPE for a vocabulary of 50257;
// InputError for damaged files.
// Each parameter's whole fp32 value goes to `sink` (row-major, the full
// shape), one parameter at a time; without one, into Param::value (this
// rank's shard of it, on its device) and the compute copy is refreshed at the
// end. A trainer whose masters ZeRO shards takes its range instead
// (init_trainer_from, lib/checkpoint/session.h): nothing gathered.
using ParamSink = std::function<void(Param& p, const std::vector<float>& full)>;
std::vector<std::string> import_hf(Model& model, const ModelConfig& cfg, const std::string& dir,
                                   const std::string& tokenizer = "", const ParamSink& sink = {});

}  // namespace dtrain

namespace dtrain {

// What model.init_from names, checked without a model (dtrain validate, a
// sweep's trials before they start): "hf:DIR" with DIR/config.json and
// DIR/model.safetensors (or a LLaMA's model.safetensors.index.json) regular
// files (their contents import_hf checks), for a model of GPT-2's or LLaMA's
// parts. One line per problem.
std::vector<std::string> init_from_problems(const ModelConfig& cfg);

// model.vocab_used = 0 (derived) with model.init_from = "hf:DIR" and a padded
// vocabulary: the ids the Hugging Face model predicts, its config.json's
// vocab_size, so that the padding rows the import adds are never predicted
// (the imported model's loss, not one over zero rows' logits too). Unchanged
// where DIR's config.json cannot be read (init_from_problems says why) or
// vocab_used is already set.
void derive_used_vocab(ModelConfig& cfg);

// The config keys of the model in the Hugging Face directory `dir`, as
// --set overrides: model.n_embd, n_layer, n_head, context_length (from
// n_positions), vocab_size and init_from = "hf:DIR", and data.tokenizer
// (config.json's dtrain_tokenizer where a dtrain export wrote it, "gpt2" for
// GPT-2's 50257 ids, else "byte"), each from config.json or GPT2Config's
// default where absent (what import_hf refuses it still refuses, naming the
// key); for a LLaMA directory also its parts, model.n_kv_head, ffn_hidden, rope_theta
// and tie_embeddings (LlamaConfig's defaults where absent). `dtrain eval
// hf:DIR`. Throws InputError for an unreadable config.json,
// ConfigError for one of those keys that is not a positive integer.
std::vector<std::string> hf_model_overrides(const std::string& dir);

// A config's TOML text from "section.key=value" lines (hf_model_overrides'
// and the caller's), one table per section: what `dtrain eval hf:DIR` and
// `dtrain generate hf:DIR` parse.
std::string keys_to_toml(const std::vector<std::string>& keys, const std::string& comment);

// The Config of those keys (hf_model_overrides' and the caller's) and
// `overrides` (--set), parsed as `label` ("hf:DIR [config.json]"). Its
// problems name config.json's keys, not the lines of the TOML text the keys
// were written to: "hf:DIR [config.json]: model.n_embd: expected a multiple of
// model.n_head (3) (config.json's n_embd, n_head)".
Config parse_hf_config(const std::vector<std::string>& keys, const std::string& comment, const std::string& label,
                       const std::vector<std::string>& overrides = {}, int world_size = 1);

// `message` of an import said as `given` ("hf:DIR", what the user named)
// instead of "model.init_from", the key a run sets.
std::string hf_said_as(const std::string& message, const std::string& given);
// f() (an import of hf:DIR for eval or generate), its InputError and
// ConfigError said as `given` (hf_said_as); an InputError's subtype is not
// kept (what the apps read of it is its kind).
template <class F>
decltype(auto) hf_import_as(const std::string& given, F&& f) {
  try {
    return f();
  } catch (const InputError& e) {
    throw InputError(hf_said_as(e.what(), given));
  } catch (const ConfigError& e) {
    std::vector<std::string> problems;
    for (const std::string& p : e.problems()) problems.push_back(hf_said_as(p, given));
    throw ConfigError(std::move(problems));
  }
}

// model.init_from: "" does nothing; "hf:DIR" is import_hf(model, cfg, DIR,
// tokenizer). Returns the lines to log: where the weights came from and the
// notes.
std::vector<std::string> apply_init_from(Model& model, const ModelConfig& cfg, const std::string& tokenizer = "",
                                         const ParamSink& sink = {});

}  // namespace dtrain
