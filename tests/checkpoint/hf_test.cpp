// Hugging Face GPT-2 directories in and out (checkpoint/hf.h): a GPT-2
// written from Hugging Face's conventions by PyTorch
// (tools/fixtures/hf_gpt2_fixture.py) gives PyTorch's logits once imported;
// export then import is bit-identical; a tensor-parallel rank imports its
// shard; models dtrain cannot express are refused naming the key.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "checkpoint/hf.h"
#include "checkpoint/safetensors.h"
#include "data/tokenizer.h"
#include "helpers.h"
#include "model/fixture.h"
#include "model/thread_comm.h"
#include "parallel/gpt_config.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

// The fixture's shapes, with a padded vocabulary (64 > 60) and fewer positions (12 < 16).
ModelConfig fixture_gpt() {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 64;
  c.context_length = 12;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.dropout = 0.0;
  c.bias = true;
  return c;
}

Config run_config(const ModelConfig& m, const std::string& tokenizer = "byte") {
  Config c = default_config("gpt");
  c.model = m;
  c.data.tokenizer = tokenizer;
  return c;
}

// The logits (B, T, V) of a whole fp32 model on `tokens`.
std::vector<float> logits(Model& m, const std::vector<int64_t>& tokens, int64_t B) {
  m.plan(B);
  Tensor x = Tensor::empty(m.input_shape(B), DType::i32);
  for (size_t i = 0; i < tokens.size(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(tokens[i]);
  Ctx ctx;
  ctx.training = false;
  Tensor y = m.forward_layers(x, ctx);
  return {y.data<float>(), y.data<float>() + y.numel()};
}

// The model's logits on the fixture's tokens against PyTorch's (fx "logits", (B, T, Vhf)):
// within 1e-5, and exactly zero in the padding rows the import added beyond Vhf.
void check_logits(Model& m, const Fixture& fx, int64_t V) {
  const FixtureArray& ref = fx.at("logits");
  const int64_t B = ref.shape[0], T = ref.shape[1], Vhf = ref.shape[2];
  const std::vector<float> y = logits(m, fx.at("tokens").i, B);
  double err = 0;
  for (int64_t r = 0; r < B * T; ++r) {
    for (int64_t v = 0; v < Vhf; ++v)
      err = std::max(err, std::abs(static_cast<double>(y[r * V + v]) - ref.f[r * Vhf + v]));
    for (int64_t v = Vhf; v < V; ++v) CHECK(y[r * V + v] == 0.0f);  // zero rows
  }
  MESSAGE("max |logit - PyTorch| = ", err);
  CHECK(err < 1e-5);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Each of 2 tp ranks imports fixture `dir` into its shards: the slices of the unsharded import.
void check_tp_import(const ModelConfig& cfg, const std::string& dir) {
  auto whole = build_model(cfg, 8, DType::f32, Device::cpu(), 1);
  import_hf(*whole, cfg, fixture_path(dir));
  run_ranks(2, [&](Communicator& tp, int rank) {
    ModelParallel par;
    par.tp = &tp;
    auto m = build_model(cfg, 8, DType::f32, Device::cpu(), 2, par);
    import_hf(*m, cfg, fixture_path(dir));
    for (const auto& p : m->params.all()) {
      const Param* w = whole->params.find(p->name);
      REQUIRE(w != nullptr);
      for (int64_t i = 0; i < p->numel(); ++i) {
        const int64_t g = p->shard.split() ? p->shard.global_index(i) : i;
        REQUIRE_MESSAGE(p->value.data<float>()[i] == w->value.data<float>()[g], p->name, " rank ", rank);
      }
    }
  });
}

// A copy of the fixture directory `name` (its weights, shards and index) with
// config.json's `from` replaced by `to`.
fs::path edited_copy(const TempDir& tmp, const std::string& name, const std::string& from, const std::string& to) {
  const fs::path dir = tmp.path / ("edited_" + name);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(fixture_path(name)))
    if (e.path().filename() != "config.json")
      fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  std::string cfg = read_file(fixture_path(name + "/config.json"));
  const size_t at = cfg.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, from);
  cfg.replace(at, from.size(), to);
  write_file(dir / "config.json", cfg);
  return dir;
}

fs::path edited_fixture(const TempDir& tmp, const std::string& from, const std::string& to) {
  return edited_copy(tmp, "hf_tiny", from, to);
}

}  // namespace

TEST_CASE("hf import: a GPT-2 written from Hugging Face conventions gives PyTorch's logits (fp32, 1e-5)") {
  const Fixture fx(fixture_path("hf_tiny.fix"));
  const FixtureArray& ref = fx.at("logits");  // (B, T, 60), float64 from the float32 parameters
  const int64_t T = ref.shape[1], Vhf = ref.shape[2];
  const ModelConfig cfg = fixture_gpt();
  auto m = build_model(cfg, T, DType::f32, Device::cpu(), 1);
  const std::vector<std::string> notes = import_hf(*m, cfg, fixture_path("hf_tiny"));
  REQUIRE(notes.size() == 2);
  CHECK(notes[0].find("vocabulary padded: 60 rows") != std::string::npos);
  CHECK(notes[0].find("4 zero rows up to model.vocab_size = 64") != std::string::npos);
  CHECK(notes[1].find("the first 12 of") != std::string::npos);

  check_logits(*m, fx, cfg.vocab_size);
  // The padding rows are zero, the rest is the file's (transposed back where Conv1D is (in, out)).
  const Param* wte = m->params.find("wte.weight");
  for (int64_t i = Vhf * cfg.n_embd; i < wte->numel(); ++i) REQUIRE(wte->value.data<float>()[i] == 0.0f);
}

TEST_CASE("hf export then import is bit-identical, and the safetensors file holds the parameters") {
  TempDir tmp;
  ModelConfig cfg = fixture_gpt();
  auto a = build_model(cfg, 8, DType::f32, Device::cpu(), 11);
  const HfExportResult r = export_hf(*a, run_config(cfg), tmp.str());
  CHECK(r.notes.empty());  // the byte tokenizer: every row exported
  CHECK(r.tensors == 4 + 12 * cfg.n_layer);
  CHECK(fs::exists(tmp.path / "config.json"));
  const std::string json = read_file(tmp.path / "config.json");
  CHECK(json.find("\"activation_function\": \"gelu_new\"") != std::string::npos);
  CHECK(json.find("\"model_type\": \"gpt2\"") != std::string::npos);
  CHECK(json.find("\"tie_word_embeddings\": true") != std::string::npos);

  auto b = build_model(cfg, 8, DType::f32, Device::cpu(), 99);  // other values first
  CHECK(import_hf(*b, cfg, tmp.str()).empty());
  for (const auto& p : a->params.all()) {
    CAPTURE(p->name);
    const Param* q = b->params.find(p->name);
    REQUIRE(q != nullptr);
    CHECK(std::memcmp(p->value.data<float>(), q->value.data<float>(), 4 * p->numel()) == 0);
  }

  // Names, (in, out) layouts and values in the file itself.
  const SafetensorsFile st((tmp.path / "model.safetensors").string());
  CHECK(st.metadata().at("format") == "pt");
  const SafeTensorInfo* qkv = st.find("transformer.h.1.attn.c_attn.weight");
  REQUIRE(qkv != nullptr);
  CHECK(qkv->shape == std::vector<int64_t>{16, 48});  // Conv1D (in, out)
  const std::vector<float> w = st.read_f32(*qkv);
  const float* ours = a->params.find("blocks.1.attn.qkv.weight")->value.data<float>();  // (48, 16)
  for (int64_t o = 0; o < 48; ++o)
    for (int64_t i = 0; i < 16; ++i) REQUIRE(w[i * 48 + o] == ours[o * 16 + i]);
  CHECK(st.find("transformer.wte.weight")->shape == std::vector<int64_t>{64, 16});
  CHECK(st.find("lm_head.weight") == nullptr);  // tied
}

TEST_CASE("hf export cuts the vocabulary padding of a GPT-2 tokenizer run, import pads it back") {
  TempDir tmp;
  ModelConfig cfg = fixture_gpt();
  cfg.vocab_size = 50304;  // GPT-2's 50257 padded to a multiple of 64
  cfg.n_layer = 1;
  cfg.n_embd = 8;
  auto a = build_model(cfg, 4, DType::f32, Device::cpu(), 5);
  const HfExportResult r = export_hf(*a, run_config(cfg, "gpt2"), tmp.str());
  REQUIRE(r.notes.size() == 1);
  CHECK(r.notes[0].find("the first 50257 of the model's 50304 rows exported (47 padding rows dropped)") !=
        std::string::npos);
  const SafetensorsFile st((tmp.path / "model.safetensors").string());
  CHECK(st.find("transformer.wte.weight")->shape == std::vector<int64_t>{50257, 8});
  CHECK(read_file(tmp.path / "config.json").find("\"vocab_size\": 50257") != std::string::npos);

  auto b = build_model(cfg, 4, DType::f32, Device::cpu(), 6);
  const std::vector<std::string> notes = import_hf(*b, cfg, tmp.str());
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("47 zero rows") != std::string::npos);
  const float* wa = a->params.find("wte.weight")->value.data<float>();
  const float* wb = b->params.find("wte.weight")->value.data<float>();
  CHECK(std::memcmp(wa, wb, 4 * 50257 * 8) == 0);
  for (int64_t i = 50257 * 8; i < 50304 * 8; ++i) REQUIRE(wb[i] == 0.0f);
}

TEST_CASE("hf import into tensor-parallel shards equals the unsharded import") {
  check_tp_import(fixture_gpt(), "hf_tiny");
}

TEST_CASE("hf import refuses what dtrain's GPT cannot express, naming the key") {
  TempDir tmp;
  const ModelConfig cfg = fixture_gpt();
  auto m = build_model(cfg, 8, DType::f32, Device::cpu(), 1);
  auto refused = [&](const fs::path& dir) { return error_of([&] { import_hf(*m, cfg, dir.string()); }); };

  CHECK(refused(edited_fixture(tmp, "\"gelu_new\"", "\"relu\"")).find("activation_function = \"relu\"") !=
        std::string::npos);
  CHECK(refused(edited_fixture(tmp, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"))
            .find("tie_word_embeddings = false") != std::string::npos);
  CHECK(refused(edited_fixture(tmp, "\"n_layer\": 2", "\"n_layer\": 3")).find("n_layer = 3 but model.n_layer = 2") !=
        std::string::npos);
  CHECK(refused(edited_fixture(tmp, "\"model_type\": \"gpt2\"", "\"model_type\": \"llama\"")).find("model_type") !=
        std::string::npos);
  CHECK(refused(edited_fixture(tmp, "\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": 1e-06"))
            .find("layer_norm_epsilon") != std::string::npos);
  CHECK(refused(edited_fixture(tmp, "\"vocab_size\": 60", "\"vocab_size\": 100")).find("model.vocab_size") !=
        std::string::npos);
  // Not a positive integer: said as such, and no comparison with a made-up default
  // (a string vocab_size also reported "vocab_size = 50257 but model.vocab_size = 60").
  std::string e = refused(edited_fixture(tmp, "\"vocab_size\": 60", "\"vocab_size\": \"60\""));
  CHECK(e.find("vocab_size: expected a positive integer, got \"60\"") != std::string::npos);
  CHECK(e.find("50257") == std::string::npos);
  e = refused(edited_fixture(tmp, "\"n_layer\": 2", "\"n_layer\": -1"));
  CHECK(e.find("n_layer: expected a positive integer, got -1") != std::string::npos);
  CHECK(e.find("to import it") == std::string::npos);

  // A missing tensor, and an untied head: files written here.
  auto b = build_model(cfg, 8, DType::f32, Device::cpu(), 3);
  const fs::path out = tmp.path / "exported";
  export_hf(*b, run_config(cfg), out.string());
  const SafetensorsFile st((out / "model.safetensors").string());
  std::vector<SafeTensorOut> all;
  for (const auto& t : st.tensors()) all.push_back({t.name, t.shape, st.read_f32(t)});
  auto rewrite = [&](std::vector<SafeTensorOut> ts) {
    write_safetensors((out / "model.safetensors").string(), ts, {{"format", "pt"}});
    return refused(out);
  };
  std::vector<SafeTensorOut> missing;
  for (const auto& t : all)
    if (t.name != "transformer.h.1.mlp.c_fc.bias") missing.push_back(t);
  CHECK(rewrite(missing).find("tensor 'transformer.h.1.mlp.c_fc.bias' is missing") != std::string::npos);
  std::vector<SafeTensorOut> untied = all;
  SafeTensorOut head = *std::find_if(all.begin(), all.end(), [](auto& t) { return t.name == "transformer.wte.weight"; });
  head.name = "lm_head.weight";
  head.data[3] += 1.0f;
  untied.push_back(head);
  CHECK(rewrite(untied).find("'lm_head.weight' differs from the token embedding: an untied output head") !=
        std::string::npos);
  // A value that is not finite: refused before any training, naming the tensor and where.
  std::vector<SafeTensorOut> nan = all;
  for (auto& t : nan)
    if (t.name == "transformer.ln_f.weight") t.data[5] = std::nanf("");
  CHECK(rewrite(nan).find("tensor 'transformer.ln_f.weight' holds nan at element 5 of 16") != std::string::npos);
  std::vector<SafeTensorOut> inf = all;
  for (auto& t : inf)
    if (t.name == "transformer.h.0.attn.c_attn.weight") t.data[0] = INFINITY;
  CHECK(rewrite(inf).find("tensor 'transformer.h.0.attn.c_attn.weight' holds inf at element 0") != std::string::npos);
  std::vector<SafeTensorOut> extra = all;
  extra.push_back({"transformer.h.0.mlp.c_gate.weight", {2}, {1.0f, 2.0f}});
  CHECK(rewrite(extra).find("'transformer.h.0.mlp.c_gate.weight' has no place") != std::string::npos);
  // Two tensors' bytes overlapping (one would import as the other), or a gap: refused.
  {
    std::string text = read_file(out / "model.safetensors");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(text[i]);
    nlohmann::json h = nlohmann::json::parse(text.substr(8, n));
    auto with_header = [&](const nlohmann::json& header) {
      const std::string j = header.dump();
      std::string len(8, '\0');
      for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((j.size() >> (8 * i)) & 0xff);
      write_file(out / "model.safetensors", len + j + text.substr(8 + n));  // offsets count from the data's start
    };
    nlohmann::json same = h;
    same["transformer.ln_f.bias"]["data_offsets"] = h["transformer.ln_f.weight"]["data_offsets"];
    with_header(same);
    // (moved onto another's bytes, it leaves a gap where it was: the first of the two found)
    CHECK(refused(out).find("tensor 'transformer.ln_f.bias': bytes [") != std::string::npos);
    CHECK(refused(out).find("(the data must be the tensors' bytes back to back)") != std::string::npos);
    with_header(h);  // the header as written passes (to the next check: the extra tensor above)
    CHECK(refused(out).find("back to back") == std::string::npos);
    write_file(out / "model.safetensors", text);
  }
  // A damaged file: a header that points past the end of the data.
  std::string bytes = read_file(out / "model.safetensors");
  write_file(out / "model.safetensors", bytes.substr(0, bytes.size() - 4));
  CHECK(refused(out).find("outside the data") != std::string::npos);
}

TEST_CASE("hf import and export keep to the run's tokenizer: ids of another are refused, as are rows cut below them") {
  TempDir tmp;
  const ModelConfig cfg = fixture_gpt();
  auto m = build_model(cfg, 8, DType::f32, Device::cpu(), 1);
  // A dtrain export says its tokenizer: a byte-level one does not load into a GPT-2-token run.
  const fs::path bytes = tmp.path / "bytes";
  export_hf(*m, run_config(cfg, "byte"), bytes.string());
  CHECK_NOTHROW(import_hf(*m, cfg, bytes.string(), "byte"));  // the same tokenizer loads
  const std::string e = error_of([&] { import_hf(*m, cfg, bytes.string(), "gpt2"); });
  CHECK(e.find("its token ids are UTF-8 bytes (dtrain_tokenizer) but the run's data.tokenizer = \"gpt2\"") !=
        std::string::npos);
  // Without dtrain_tokenizer, a vocabulary of exactly GPT-2's is GPT-2's BPE.
  ModelConfig wide = cfg;
  wide.vocab_size = 50304;
  auto w = build_model(wide, 8, DType::f32, Device::cpu(), 2);
  const fs::path hf = tmp.path / "gpt2ids";
  export_hf(*w, run_config(wide, "gpt2"), hf.string());
  std::string json = read_file(hf / "config.json");
  json.replace(json.find("\"dtrain_tokenizer\""), std::string("\"dtrain_tokenizer\": \"gpt2\"").size(), "\"unused\": 0");
  write_file(hf / "config.json", json);
  CHECK(error_of([&] { import_hf(*w, wide, hf.string(), "byte"); })
            .find("its token ids are GPT-2's BPE (vocab_size 50257)") != std::string::npos);
  CHECK(error_of([&] { import_hf(*w, wide, hf.string(), "gpt2"); }) == "(no error)");
  CHECK(error_of([&] { import_hf(*w, wide, hf.string()); }) == "(no error)");  // "": not checked
  // Export: fewer rows than the tokenizer's ids would drop tokens, not padding.
  CHECK(error_of([&] { export_hf(*w, run_config(wide, "gpt2"), (tmp.path / "cut").string(), 50000); })
            .find("--vocab-size 50000: expected 50257 .. model.vocab_size (50304)") != std::string::npos);
  CHECK(error_of([&] { export_hf(*m, run_config(cfg, "byte"), (tmp.path / "cut2").string(), 32); })
            .find("--vocab-size 32: expected 64 .. model.vocab_size (64)") != std::string::npos);
}

TEST_CASE("hf export of a run on a Hugging Face tokenizer: its ids are the rows, its markers config.json's, and import reads it back") {
  TempDir tmp;
  // The tiny tokenizer: 560 ids, <bos> 556 (its template), <|endoftext|> 557.
  const auto tok = hf_tokenizer(std::string(DTRAIN_SOURCE_DIR) + "/tests/fixtures/hf_tokenizer_tiny");
  ModelConfig cfg = fixture_gpt();
  cfg.vocab_size = 576;  // padded beyond the 560 ids
  auto m = build_model(cfg, 8, DType::f32, Device::cpu(), 3);
  const fs::path out = tmp.path / "hf";
  CHECK(error_of([&] { export_hf(*m, run_config(cfg, "hf"), out.string()); })
            .find("the export needs the run's tokenizer") != std::string::npos);
  CHECK(error_of([&] { export_hf(*m, run_config(cfg, "hf"), out.string(), 500, tok.get()); })
            .find("--vocab-size 500: expected 560 .. model.vocab_size (576): the rows below 560 are the Hugging Face "
                  "tokenizer's ids") != std::string::npos);
  const HfExportResult r = export_hf(*m, run_config(cfg, "hf"), out.string(), 0, tok.get());
  REQUIRE(r.notes.size() == 1);
  CHECK(r.notes[0] == "vocabulary: the first 560 of the model's 576 rows exported (16 padding rows dropped), the ids "
                      "of the Hugging Face tokenizer");
  const nlohmann::json c = nlohmann::json::parse(read_file(out / "config.json"));
  CHECK(c["vocab_size"] == 560);
  CHECK(c["bos_token_id"] == 556);
  CHECK(c["eos_token_id"] == 557);
  CHECK(c["dtrain_tokenizer"] == "hf");
  // Its keys say the tokenizer is the directory's own (dtrain export copies
  // tokenizer.json there), and the import loads into a run of it.
  const std::vector<std::string> keys = hf_model_overrides(out.string());
  for (const std::string& k : {std::string("data.tokenizer=\"hf\""), "data.tokenizer_dir=\"" + out.string() + "\""})
    CHECK_MESSAGE(std::find(keys.begin(), keys.end(), k) != keys.end(), k);
  CHECK(error_of([&] { import_hf(*m, cfg, out.string(), "hf"); }) == "(no error)");
  CHECK(error_of([&] { import_hf(*m, cfg, out.string(), "gpt2"); }).find("but the run's data.tokenizer = \"gpt2\"") !=
        std::string::npos);
  // A LLaMA directory with a tokenizer.json (the Hub's) is read with it.
  const fs::path llama = edited_copy(tmp, "hf_llama_tiny", "\"model_type\"", "\"model_type\"");
  fs::copy_file(std::string(DTRAIN_SOURCE_DIR) + "/tests/fixtures/hf_tokenizer_tiny/tokenizer.json", llama / "tokenizer.json");
  const std::vector<std::string> llama_keys = hf_model_overrides(llama.string());
  for (const std::string& k : {std::string("data.tokenizer=\"hf\""), "data.tokenizer_dir=\"" + llama.string() + "\""})
    CHECK_MESSAGE(std::find(llama_keys.begin(), llama_keys.end(), k) != llama_keys.end(), k);
  fs::remove(llama / "tokenizer.json");
  for (const std::string& k : hf_model_overrides(llama.string())) CHECK(k.rfind("data.tokenizer", 0) != 0);
}

// ---------------------------------------------------------------- LLaMA

namespace {

// The LLaMA fixture's shapes (tools/fixtures/hf_llama_fixture.py), with a padded vocabulary (64 > 60).
ModelConfig fixture_llama(bool tied = false) {
  ModelConfig c = test::llama_parts(fixture_gpt(), 24, 500);
  c.tie_embeddings = tied;
  return c;
}

// `c` with LLaMA 3.1's rope scaling: factor 8, low 1, high 4 (Meta's), and the
// original context given (the fixtures' 40 scales each kind of frequency).
ModelConfig llama3_scaled(ModelConfig c, int64_t original) {
  c.rope_scaling = "llama3";
  c.rope_factor = 8;
  c.rope_low_freq_factor = 1;
  c.rope_high_freq_factor = 4;
  c.rope_original_context = original;
  return c;
}

fs::path edited_llama(const TempDir& tmp, const std::string& from, const std::string& to) {
  return edited_copy(tmp, "hf_llama_tiny", from, to);
}

}  // namespace

TEST_CASE("hf import: a LLaMA in two shards, written from Hugging Face conventions, gives PyTorch's logits (fp32, 1e-5)") {
  const Fixture fx(fixture_path("hf_llama_tiny.fix"));
  const int64_t T = fx.at("logits").shape[1];  // (B, T, 60), float64 from the float32 weights
  const ModelConfig cfg = fixture_llama();
  auto m = build_model(cfg, T, DType::f32, Device::cpu(), 1);
  const std::vector<std::string> notes = import_hf(*m, cfg, fixture_path("hf_llama_tiny"));
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("vocabulary padded: 60 rows") != std::string::npos);
  check_logits(*m, fx, cfg.vocab_size);
  // The keys `dtrain eval hf:DIR` builds the model from.
  const std::vector<std::string> keys = hf_model_overrides(fixture_path("hf_llama_tiny"));
  for (const char* k : {"model.norm=\"rmsnorm\"", "model.mlp=\"swiglu\"", "model.position=\"rope\"", "model.bias=false",
                        "model.n_embd=16", "model.n_layer=2", "model.n_head=2", "model.ffn_hidden=24",
                        "model.context_length=12", "model.vocab_size=60", "model.rope_theta=500",
                        "model.tie_embeddings=false"})
    CHECK_MESSAGE(std::find(keys.begin(), keys.end(), k) != keys.end(), k);
}

TEST_CASE("hf export of LLaMA's parts then import is bit-identical, tied and untied, and the files hold LLaMA's names") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    TempDir tmp;
    const ModelConfig cfg = fixture_llama(tied);
    auto a = build_model(cfg, 8, DType::f32, Device::cpu(), 11);
    const HfExportResult r = export_hf(*a, run_config(cfg), tmp.str());
    CHECK(r.tensors == 2 + 9 * cfg.n_layer + (tied ? 0 : 1));
    const std::string json = read_file(tmp.path / "config.json");
    CHECK(json.find("\"model_type\": \"llama\"") != std::string::npos);
    CHECK(json.find(tied ? "\"tie_word_embeddings\": true" : "\"tie_word_embeddings\": false") != std::string::npos);
    CHECK(json.find("\"num_key_value_heads\": 2") != std::string::npos);
    CHECK(json.find("\"eos_token_id\": null") != std::string::npos);  // no end-of-text among byte ids
    auto b = build_model(cfg, 8, DType::f32, Device::cpu(), 99);
    CHECK(import_hf(*b, cfg, tmp.str()).empty());
    for (const auto& p : a->params.all()) {
      CAPTURE(p->name);
      const Param* q = b->params.find(p->name);
      REQUIRE(q != nullptr);
      CHECK(std::memcmp(p->value.data<float>(), q->value.data<float>(), 4 * p->numel()) == 0);
    }
    // The fused rows split: q, k, v and the gate, up (in that order) of each layer.
    const SafetensorsFile st((tmp.path / "model.safetensors").string());
    const float* qkv = a->params.find("blocks.1.attn.qkv.weight")->value.data<float>();  // (48, 16)
    const float* fc = a->params.find("blocks.1.mlp.fc.weight")->value.data<float>();     // (48, 16)
    int k = 0;
    for (const char* n : {"q_proj", "k_proj", "v_proj"}) {
      const SafeTensorInfo* t = st.find(fmt::format("model.layers.1.self_attn.{}.weight", n));
      REQUIRE(t != nullptr);
      CHECK(t->shape == std::vector<int64_t>{16, 16});
      const std::vector<float> w = st.read_f32(*t);
      CHECK(std::memcmp(w.data(), qkv + k++ * 256, 4 * 256) == 0);
    }
    CHECK(st.read_f32(*st.find("model.layers.1.mlp.gate_proj.weight")) == std::vector<float>(fc, fc + 24 * 16));
    CHECK(st.read_f32(*st.find("model.layers.1.mlp.up_proj.weight")) == std::vector<float>(fc + 24 * 16, fc + 48 * 16));
    CHECK((st.find("lm_head.weight") == nullptr) == tied);
  }
}

TEST_CASE("hf import of a LLaMA with LLaMA 3.1's rope_scaling gives PyTorch's logits (fp32, 1e-5)") {
  const Fixture fx(fixture_path("hf_llama_scaled_tiny.fix"));
  ModelConfig cfg = llama3_scaled(fixture_llama(), 40);
  cfg.n_kv_head = 1;  // multi-query: 2 query heads of 8, one key/value head
  auto m = build_model(cfg, fx.at("logits").shape[1], DType::f32, Device::cpu(), 1);
  import_hf(*m, cfg, fixture_path("hf_llama_scaled_tiny"));
  check_logits(*m, fx, cfg.vocab_size);
}

TEST_CASE("hf export of LLaMA 3.1's rope scaling writes rope_scaling, and imports bit-identically with its keys") {
  TempDir tmp;
  const ModelConfig cfg = llama3_scaled(fixture_llama(), 40);
  auto a = build_model(cfg, 8, DType::f32, Device::cpu(), 11);
  export_hf(*a, run_config(cfg), tmp.str());
  const std::string json = read_file(tmp.path / "config.json");
  CHECK(json.find("\"rope_type\": \"llama3\"") != std::string::npos);
  CHECK(json.find("\"original_max_position_embeddings\": 40") != std::string::npos);
  const std::vector<std::string> keys = hf_model_overrides(tmp.str());
  for (const char* k : {"model.rope_scaling=\"llama3\"", "model.rope_factor=8", "model.rope_low_freq_factor=1",
                        "model.rope_high_freq_factor=4", "model.rope_original_context=40"})
    CHECK_MESSAGE(std::find(keys.begin(), keys.end(), k) != keys.end(), k);
  auto b = build_model(cfg, 8, DType::f32, Device::cpu(), 99);
  CHECK(import_hf(*b, cfg, tmp.str()).empty());
  for (const auto& p : a->params.all())
    CHECK(std::memcmp(p->value.data<float>(), b->params.find(p->name)->value.data<float>(), 4 * p->numel()) == 0);
  // The unscaled model refuses it, naming the keys.
  auto c = build_model(fixture_llama(), 8, DType::f32, Device::cpu(), 1);
  const std::string e = error_of([&] { import_hf(*c, fixture_llama(), tmp.str()); });
  INFO(e);
  CHECK(e.find("set model.rope_scaling = \"llama3\", rope_factor = 8") != std::string::npos);
}

TEST_CASE("hf import of a LLaMA into tensor-parallel shards equals the unsharded import") {
  check_tp_import(fixture_llama(), "hf_llama_tiny");
}

namespace {
// The grouped-query fixture: 4 query heads, 2 key/value heads.
ModelConfig fixture_llama_gqa() {
  ModelConfig c = fixture_llama();
  c.n_head = 4;
  c.n_kv_head = 2;
  return c;
}
}  // namespace

TEST_CASE("hf import of a LLaMA with grouped-query attention gives PyTorch's logits (repeat_kv), and tp shards split it") {
  const Fixture fx(fixture_path("hf_llama_gqa_tiny.fix"));
  const ModelConfig cfg = fixture_llama_gqa();
  auto m = build_model(cfg, fx.at("logits").shape[1], DType::f32, Device::cpu(), 1);
  import_hf(*m, cfg, fixture_path("hf_llama_gqa_tiny"));
  CHECK(m->params.find("blocks.0.attn.qkv.weight")->shape == Shape{16 + 2 * 8, 16});
  check_logits(*m, fx, cfg.vocab_size);
  const std::vector<std::string> keys = hf_model_overrides(fixture_path("hf_llama_gqa_tiny"));
  for (const char* k : {"model.n_head=4", "model.n_kv_head=2"})
    CHECK_MESSAGE(std::find(keys.begin(), keys.end(), k) != keys.end(), k);
  // Multi-head attention's model cannot take it: said as the key to set.
  auto mha = build_model(fixture_llama(), 8, DType::f32, Device::cpu(), 1);
  const std::string e = error_of([&] { import_hf(*mha, fixture_llama(), fixture_path("hf_llama_gqa_tiny")); });
  INFO(e);
  CHECK(e.find("num_attention_heads = 4 but model.n_head = 2") != std::string::npos);
  // tp 2: each rank its 2 query heads and 1 key/value head of each qkv.
  check_tp_import(cfg, "hf_llama_gqa_tiny");
}

TEST_CASE("hf export of a LLaMA with grouped-query attention writes k_proj and v_proj of its key/value heads, and imports bit-identically") {
  TempDir tmp;
  const ModelConfig cfg = fixture_llama_gqa();
  auto a = build_model(cfg, 8, DType::f32, Device::cpu(), 11);
  export_hf(*a, run_config(cfg), tmp.str());
  const std::string json = read_file(tmp.path / "config.json");
  CHECK(json.find("\"num_attention_heads\": 4") != std::string::npos);
  CHECK(json.find("\"num_key_value_heads\": 2") != std::string::npos);
  const SafetensorsFile st((tmp.path / "model.safetensors").string());
  const float* qkv = a->params.find("blocks.0.attn.qkv.weight")->value.data<float>();  // (32, 16): q 16, k 8, v 8 rows
  const int64_t rows[] = {16, 8, 8};
  int64_t first = 0, k = 0;
  for (const char* n : {"q_proj", "k_proj", "v_proj"}) {
    const SafeTensorInfo* t = st.find(fmt::format("model.layers.0.self_attn.{}.weight", n));
    REQUIRE(t != nullptr);
    CHECK(t->shape == std::vector<int64_t>{rows[k], 16});
    CHECK(st.read_f32(*t) == std::vector<float>(qkv + first * 16, qkv + (first + rows[k]) * 16));
    first += rows[k++];
  }
  auto b = build_model(cfg, 8, DType::f32, Device::cpu(), 99);
  CHECK(import_hf(*b, cfg, tmp.str()).empty());
  for (const auto& p : a->params.all()) {
    CAPTURE(p->name);
    CHECK(std::memcmp(p->value.data<float>(), b->params.find(p->name)->value.data<float>(), 4 * p->numel()) == 0);
  }
  // GPT-2's format has no place for fewer key/value heads.
  ModelConfig gpt = fixture_gpt();
  gpt.n_head = 4;
  gpt.n_kv_head = 2;
  auto g = build_model(gpt, 8, DType::f32, Device::cpu(), 1);
  const std::string e = error_of([&] { export_hf(*g, run_config(gpt), tmp.str() + "/gpt2"); });
  INFO(e);
  CHECK(e.find("model.n_kv_head = 2") != std::string::npos);
}

TEST_CASE("hf: what a LLaMA import or export cannot express is refused, naming the key") {
  TempDir tmp;
  const ModelConfig cfg = fixture_llama();
  auto m = build_model(cfg, 8, DType::f32, Device::cpu(), 1);
  auto refused = [&](const fs::path& dir) { return error_of([&] { import_hf(*m, cfg, dir.string()); }); };
  auto says = [](const std::string& e, const std::string& what) {
    INFO(e);
    CHECK(e.find(what) != std::string::npos);
  };
  says(refused(edited_llama(tmp, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1")),
       "num_key_value_heads = 1 but model.n_kv_head = 2: set model.n_kv_head = 1 to import it");
  says(refused(edited_llama(tmp, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3")),
       "num_key_value_heads = 3: each key/value head serves a whole group of query heads, and 3 does not divide "
       "num_attention_heads = 2");
  says(refused(edited_llama(tmp, "\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\"}")),
       "rope_scaling = {\"rope_type\":\"llama3\"}: rope_type \"llama3\" needs factor, a number of at least 1");
  says(refused(edited_llama(tmp, "\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}")),
       "rope_scaling = {\"factor\":4.0,\"rope_type\":\"yarn\"}: dtrain scales rotary embeddings as LLaMA 3.1 does");
  // A partial rotation (transformers turns the first partial_rotary_factor of each head) is not dtrain's.
  says(refused(edited_llama(tmp, "\"rope_scaling\": null", "\"rope_scaling\": null, \"partial_rotary_factor\": 0.5")),
       "partial_rotary_factor = 0.5: dtrain's rotary embedding turns every dimension of a head (1.0)");
  // transformers' "default" rope_type is no scaling: imported as the model without it.
  CHECK(error_of([&] {
          import_hf(*m, cfg, edited_llama(tmp, "\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"default\"}, "
                                               "\"partial_rotary_factor\": 1.0").string());
        }) == "(no error)");
  // LLaMA 3.1's scaling, complete, into a model without it: said as the keys to set.
  says(refused(edited_llama(tmp, "\"rope_scaling\": null",
                            "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                            "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}")),
       "set model.rope_scaling = \"llama3\", rope_factor = 8, rope_low_freq_factor = 1, rope_high_freq_factor = 4, "
       "rope_original_context = 8192 to import it");
  says(refused(edited_llama(tmp, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e-06")),
       "rms_norm_eps = 1e-06: dtrain's RMSNorm uses eps 1e-5");
  says(refused(edited_llama(tmp, "\"rope_theta\": 500.0", "\"rope_theta\": 10000.0")),
       "rope_theta = 10000 but model.rope_theta = 500: set model.rope_theta = 10000 to import it");
  says(refused(edited_llama(tmp, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true")),
       "tie_word_embeddings = true but model.tie_embeddings = false: set model.tie_embeddings = true to import it");
  says(refused(edited_llama(tmp, "\"intermediate_size\": 24", "\"intermediate_size\": 32")),
       "intermediate_size = 32 but model.ffn_hidden = 24: set model.ffn_hidden = 32 to import it");
  says(refused(edited_llama(tmp, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"")),
       "hidden_act = \"gelu\": dtrain's SwiGLU gates with silu");
  says(refused(edited_llama(tmp, "\"mlp_bias\": false", "\"mlp_bias\": true")), "mlp_bias = true");
  says(refused(edited_llama(tmp, "\"rope_theta\": 500.0", "\"rope_theta\": \"500\"")),
       "rope_theta = \"500\": expected a number above 1");
  // A shard the index names but that is not there.
  const fs::path dir = edited_llama(tmp, "\"model_type\"", "\"model_type\"");
  fs::remove(dir / "model-00002-of-00002.safetensors");
  says(refused(dir), "model-00002-of-00002.safetensors");
  // The index may name files in its own directory only.
  std::string index = read_file(fixture_path("hf_llama_tiny/model.safetensors.index.json"));
  const std::string shard = "\"model-00002-of-00002.safetensors\"";
  index.replace(index.find(shard), shard.size(), "\"../model-00002-of-00002.safetensors\"");
  write_file(dir / "model.safetensors.index.json", index);
  says(refused(dir), "expected a file name in");
  // A GPT of GPT-2's parts from a LLaMA directory, and a LLaMA of GPT-2's parts.
  auto g = build_model(fixture_gpt(), 8, DType::f32, Device::cpu(), 1);
  says(error_of([&] { import_hf(*g, fixture_gpt(), fixture_path("hf_llama_tiny")); }),
       "model_type = \"llama\" but model.norm = \"layernorm\"");
  says(error_of([&] { import_hf(*m, cfg, fixture_path("hf_tiny")); }), "model_type = \"gpt2\" but model.norm");
  // A mix of the two has no format: export and model.init_from refuse it, naming the keys.
  ModelConfig mix = cfg;
  mix.position = "learned";
  auto x = build_model(mix, 8, DType::f32, Device::cpu(), 1);
  says(error_of([&] { export_hf(*x, run_config(mix), tmp.str() + "/mix"); }),
       "model.position = \"learned\", model.bias = false, model.ffn_hidden = 24, model.tie_embeddings = false: "
       "neither Hugging Face format holds this mix");
  CHECK(!fs::exists(tmp.path / "mix"));
  mix.init_from = "hf:" + fixture_path("hf_llama_tiny");
  REQUIRE(init_from_problems(mix).size() == 1);
  says(init_from_problems(mix)[0], "neither Hugging Face format holds this mix");
  ModelConfig ok = cfg;
  ok.init_from = "hf:" + fixture_path("hf_llama_tiny");  // sharded: no model.safetensors, the index instead
  CHECK(init_from_problems(ok).empty());
}

TEST_CASE("safetensors: a shape whose element count overflows 64 bits is refused, not wrapped to the offsets") {
  // [2^32, 2^32] F32 is 2^66 bytes, which wraps to 0: the empty offsets matched it.
  TempDir tmp;
  const std::string header =
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})";
  const fs::path path = tmp.path / "model.safetensors";
  {
    std::ofstream f(path, std::ios::binary);
    uint64_t n = header.size();
    for (int b = 0; b < 8; ++b) f.put(static_cast<char>((n >> (8 * b)) & 0xff));
    f << header;
  }
  try {
    SafetensorsFile st(path.string());
    FAIL("accepted");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("tensor 'w': shape [4294967296, 4294967296] has more elements than 2^64 bytes hold") !=
          std::string::npos);
  }
}
