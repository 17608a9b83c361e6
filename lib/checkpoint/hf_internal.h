// What the two Hugging Face families share (hf.cpp: GPT-2; hf_llama.cpp:
// LLaMA); not part of the library's interface (checkpoint/hf.h is).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "checkpoint/hf.h"
#include "checkpoint/safetensors.h"

namespace dtrain::hf_detail {

using json = nlohmann::json;

// DIR/config.json as a JSON object; `role` names the file in the regular-file
// check, `said_as` ("model.init_from: " or "") leads the cannot-open message.
json read_config_json(const std::string& dir, const char* role, const char* said_as);

// Writes `out_dir`/config.json (bos_token_id and eos_token_id: r.bos and
// r.eos, null where -1) and `out_dir`/model.safetensors; r gains the file's
// bytes and tensor count. Throws RuntimeError when they cannot be written.
HfExportResult write_hf_dir(const std::string& out_dir, json config, const std::vector<SafeTensorOut>& tensors,
                            HfExportResult r);

// Sets parameter p (this rank's shard of it, on its device) from its whole
// value `full` (row-major, p's full shape).
void set_from_full(Param& p, const std::vector<float>& full);

// An importer's checks of config.json (`file`), every problem kept, each
// naming the file and key.
struct ConfigJsonChecks {
  const json& hc;
  std::string file;
  std::vector<std::string> problems;

  // The key's positive integer, `dflt` (the format's default) where it is
  // absent; nothing, and a problem, where it is not a positive integer, so
  // that no comparison uses a number the file does not hold.
  std::optional<int64_t> integer(const char* key, int64_t dflt) {
    if (!hc.contains(key) || hc[key].is_null()) return dflt;
    if (!hc[key].is_number_integer() || hc[key].get<int64_t>() < 1) {
      problems.push_back(fmt::format("{}: {}: expected a positive integer, got {}", file, key, hc[key].dump()));
      return std::nullopt;
    }
    return hc[key].get<int64_t>();
  }
  // The key's value cannot be imported, because `why`.
  void refuse(const char* key, const std::string& why) {
    problems.push_back(fmt::format("{}: {} = {}: {}", file, key, hc.contains(key) ? hc[key].dump() : "(absent)", why));
  }
  // The file's `hf` (when it holds one) must be the model's `ours` = v.
  void same(const char* key, std::optional<int64_t> hf, const char* ours, int64_t v) {
    if (hf && *hf != v)
      problems.push_back(fmt::format("{}: {} = {} but {} = {}: set {} = {} to import it", file, key, *hf, ours, v,
                                     ours, *hf));
  }
};

// The import's note for a directory of `vocab` rows under model.vocab_size
// (padded with zero rows), saying whether the padding is predicted.
std::string padded_vocab_note(const ModelConfig& cfg, int64_t vocab, const std::string& dir);

// config.json's model_type is "llama".
bool is_llama(const json& hc);

// "" where the model's parts are LLaMA's (rmsnorm, swiglu, rope, no biases),
// else which keys are not.
std::string llama_parts_problem(const ModelConfig& m);

// export_hf, import_hf and hf_model_overrides for a LLaMA directory
// (LlamaForCausalLM: config.json and model.safetensors, or the shards
// model.safetensors.index.json names). V: the vocabulary rows to write,
// checked by export_hf; r: its notes so far.
HfExportResult export_llama(const Model& model, const Config& cfg, const std::string& out_dir, int64_t V,
                            HfExportResult r);
std::vector<std::string> import_llama(Model& model, const ModelConfig& cfg, const std::string& dir, const json& hc,
                                      const std::string& tokenizer, const ParamSink& sink);
std::vector<std::string> llama_model_overrides(const std::string& dir, const json& hc);

}  // namespace dtrain::hf_detail
