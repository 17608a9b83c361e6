// Hardware presets and the hardware file format. Preset figures are vendor
// peaks (dense, no sparsity) with achievable fractions from published
// measurements; cpu-local was measured on the 2-core machine this project is
// developed on (numbers and commands in docs/planner.md).
#include "parallel/hardware.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "config/dtrain_file.h"
#include "config/schema.h"
#include "config/toml_doc.h"
#include "core/error.h"

namespace dtrain {

const char* kernels_name(Kernels k) {
  switch (k) {
    case Kernels::dtrain_cuda: return "dtrain-cuda";
    case Kernels::megatron_2021: return "megatron-2021";
    case Kernels::megatron_core: return "megatron-core";
    default: return "per-op";
  }
}

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kG = 1e9, kT = 1e12, kUs = 1e-6;

// GPU presets: vendor datasheet peaks (dense, no sparsity) and memory; the
// achievable fractions from measurements (docs/planner.md, "Hardware
// presets", gives every source): a large bf16 matrix product at 73% of peak
// on the H100 and H200, sustained (tools/gpu/gemm_sweep.py on the lent H200,
// tools/bench/results_gpu.md: the block products of every Megatron-Core r0.8
// row at 0.67-0.71 of peak, 4096^3 at 0.755 and 8192^3 at 0.69 once the
// clocks had settled under the power limit; 0.73 is the asymptote whose
// roofline reproduces those products, each within 3.2%; short runs reach
// 770-800 TFLOP/s at 8192^3, ml-engineering's best-shape search 80.3%), at
// 80% on the A100 (ml-engineering's 86.9%, nothing sustained measured),
// smaller ones on the harmonic roofline (Hardware::roofline_half_dim: half
// of that at x = 136 on the A100, 240 on the H100, 167 on the H200);
// memory-bound passes at 90% of the HBM bandwidth (H100 3.0, H200 4.2 TB/s
// measured by device copies). The backend is this trainer's CUDA one: its
// attention materialises the probabilities (cuBLASLt products around
// lib/kernels/cuda's causal softmax, lib/ops/cuda/blas.cpp: P kept for the
// backward, fp32 scores in chunks), its other memory-bound kernels are
// lib/kernels/cuda's, its tp communication is not overlapped. A runtime with a
// flash-style attention says `fused_attention = true` in its hardware file.
// A collective hidden behind compute holds 16 SMs (NCCL's channels between
// 8-NIC nodes, one CTA and SM each: NVIDIA/nccl issue #689).
Hardware h100_sxm() {
  Hardware h;
  h.name = "h100-sxm";
  h.description =
      "NVIDIA H100 SXM 80 GB, 8 per node (DGX H100): NVLink 4 through NVSwitch, one 400 Gb/s "
      "InfiniBand NDR port per GPU; datasheet peaks, measured achievable fractions (docs/planner.md)";
  h.memory_bytes = 80 * kGiB;
  h.usable_memory_fraction = 0.9;
  h.peak_fp32 = 67 * kT;   // without tensor cores (TF32 would be 494)
  h.peak_bf16 = 989 * kT;  // dense
  h.efficiency = 0.73;     // sustained, measured on the H200 (the same chip and power limit)
  h.memory_bandwidth = 3015 * kG;  // 90% of 3.35 TB/s
  h.gemm_half_dim = h.roofline_half_dim();
  h.fused_attention = false;  // lib/ops/cuda/blas.cpp keeps P (a s^2 per sample)
  h.kernels = Kernels::dtrain_cuda;
  h.layer_overhead = 20 * kUs;
  h.devices_per_node = 8;
  h.intra = {400 * kG, 3 * kUs};  // NCCL all-reduce bus bandwidth of about 400-480 GB/s
  h.inter = {45 * kG, 6 * kUs};   // 50 GB/s per port, about 90% achieved
  h.overlap = 0.9;
  h.comm_compute_share = 16.0 / 132;  // NCCL's 16 channels (one SM each) of the 132 SMs
  return h;
}

// The H200 is the H100's chip with HBM3e: 141 GB (139 GiB usable on the lent
// machine, as cudaMemGetInfo reports) at 4.8 TB/s; the same compute peaks.
Hardware h200() {
  Hardware h = h100_sxm();
  h.name = "h200";
  h.description =
      "NVIDIA H200 SXM 141 GB, 8 per node (HGX H200): NVLink 4 through NVSwitch, one 400 Gb/s "
      "InfiniBand NDR port per GPU; datasheet peaks, measured achievable fractions (docs/planner.md)";
  h.memory_bytes = 141 * kGiB;
  h.memory_bandwidth = 4320 * kG;  // 90% of 4.8 TB/s (4.2 measured)
  h.gemm_half_dim = h.roofline_half_dim();
  return h;
}

Hardware a100_80gb() {
  Hardware h;
  h.name = "a100-80gb";
  h.description =
      "NVIDIA A100 SXM 80 GB, 8 per node (DGX A100): NVLink 3 through NVSwitch, one 200 Gb/s "
      "InfiniBand HDR port per GPU; datasheet peaks, measured achievable fractions (docs/planner.md)";
  h.memory_bytes = 80 * kGiB;
  h.usable_memory_fraction = 0.9;
  h.peak_fp32 = 19.5 * kT;
  h.peak_bf16 = 312 * kT;
  h.efficiency = 0.8;
  h.memory_bandwidth = 1835 * kG;  // 90% of 2039 GB/s
  h.gemm_half_dim = h.roofline_half_dim();
  h.fused_attention = false;  // lib/ops/cuda/blas.cpp keeps P (a s^2 per sample)
  h.kernels = Kernels::dtrain_cuda;
  h.layer_overhead = 20 * kUs;
  h.devices_per_node = 8;
  h.intra = {230 * kG, 3 * kUs};
  h.inter = {22 * kG, 6 * kUs};
  // PCIe Gen4 x16 (32 GB/s, about 25 achieved) from each of the DGX A100's
  // four PCIe switches to the CPUs, two GPUs (and two NICs) behind each: half
  // of it per GPU when all eight copy at once.
  h.host_bandwidth = 12.5 * kG;
  h.overlap = 0.9;
  h.comm_compute_share = 16.0 / 108;  // NCCL's 16 channels (one SM each) of the 108 SMs
  return h;
}

// This project's 2-core x86 machine as 4 one-thread ranks (mpirun
// --oversubscribe), as `dtrain profile --write-hardware` measured it
// (tools/bench/plan_hardware.toml; the command is in
// tools/bench/plan_results.md): one core's sgemm (dtrain's AVX-512 kernel)
// 243 GFLOP/s, the layers of configs/gpt.toml at n_embd = 256 208 GFLOP/s,
// 347 us per layer pass, the update at 55 GB/s, 2 compute units for the 4
// ranks (each computes at a whole core's rate while others wait; the two
// cores bound them together), all-reduce steps of 4.1 us at 5.3 GB/s, no
// hand-over cost beyond that. tools/bench/plan_results.md compares the
// predictions with measurements. The efficiency is refitted from those raw
// measurements (the file's [calibration] table) as fit_compute fits them
// now, the memory-bound passes (29.2 MB per sample at 55 GB/s) taken off:
// 217 GFLOP/s, 0.89 of the sgemm; no small sgemm was measured then, so the
// curve is flat (gemm_half_dim 0). bf16: that machine's kind (AVX512-BF16, no
// AMX) ran dtrain's bf16 products at 1.6-2.2x its sgemm on every GPT-2 124M
// shape (tools/bench/results_cpu_bf16.md: build/bgemm_peak, 290-350 against
// 150-190 GFLOP/s), so 1.88x the sgemm's peak; `dtrain profile
// --write-hardware` measures both products on the machine at hand.
Hardware cpu_local() {
  Hardware h;
  h.name = "cpu-local";
  h.description =
      "this 2-core CPU machine as 4 one-thread MPI ranks sharing its cores, over shared memory "
      "(dtrain profile --write-hardware: tools/bench/plan_hardware.toml)";
  h.memory_bytes = 24 * kGiB / 4;
  h.usable_memory_fraction = 0.8;
  h.peak_fp32 = 243 * kG;
  h.peak_bf16 = 1.88 * h.peak_fp32;
  h.efficiency = 0.89;
  h.memory_bandwidth = 55 * kG;
  h.layer_overhead = 347 * kUs;
  h.devices_per_node = 4;
  h.compute_units = 2;
  h.handoff_latency = 0;
  h.intra = {5.3 * kG, 4.1 * kUs};
  h.inter = {5.3 * kG, 4.1 * kUs};
  h.overlap = 0.5;
  return h;
}

// The file's layout: [section] key = number, with the unit in the key's name.
struct FileKey {
  const char* section;
  const char* key;
  double scale;       // file unit -> SI
  double Hardware::*field;
  bool required;
};

const std::vector<FileKey>& file_keys() {
  static const std::vector<FileKey> keys = {
      {"device", "memory_gib", kGiB, &Hardware::memory_bytes, true},
      {"device", "usable_memory_fraction", 1, &Hardware::usable_memory_fraction, false},
      {"device", "peak_tflops_fp32", kT, &Hardware::peak_fp32, true},
      {"device", "peak_tflops_bf16", kT, &Hardware::peak_bf16, false},
      {"device", "efficiency", 1, &Hardware::efficiency, false},
      {"device", "gemm_half_dim", 1, &Hardware::gemm_half_dim, false},
      {"device", "memory_bandwidth_gbs", kG, &Hardware::memory_bandwidth, true},
      {"device", "layer_overhead_us", kUs, &Hardware::layer_overhead, false},
      {"device", "comm_compute_share", 1, &Hardware::comm_compute_share, false},
      {"device", "tp_comm_compute_share", 1, &Hardware::tp_comm_compute_share, false},
      {"node", "overlap", 1, &Hardware::overlap, false},
      {"node", "tp_overlap", 1, &Hardware::tp_overlap, false},
      {"node", "handoff_us", kUs, &Hardware::handoff_latency, false},
      {"node", "tp_bandwidth_gbs", kG, &Hardware::tp_bandwidth, false},
      {"node", "sp_bandwidth_gbs", kG, &Hardware::sp_bandwidth, false},
      {"node", "host_bandwidth_gbs", kG, &Hardware::host_bandwidth, false},
  };
  return keys;
}

double& link_field(Hardware& h, const std::string& section, const std::string& key) {
  Link& l = section == "intra" ? h.intra : h.inter;
  return key == "bandwidth_gbs" ? l.bandwidth : l.latency;
}

// What a file gave, for a message: "an integer 0", "a string \"no\"".
std::string shown_value(const config::TomlDoc& v) {
  switch (v.type()) {
    case toml::value_t::boolean: return v.as_boolean() ? "true" : "false";
    case toml::value_t::integer: return fmt::format("{}", v.as_integer());
    case toml::value_t::floating: return config::toml_float(v.as_floating());
    case toml::value_t::string: {
      const std::string& str = v.as_string().str;
      return config::toml_string(str.size() > 64 ? str.substr(0, 61) + "..." : str);
    }
    case toml::value_t::array: return "an array";
    case toml::value_t::table: return "a table";
    default: return "a date/time";
  }
}

[[noreturn]] void bad(const std::string& name, const config::TomlDoc& v, const std::string& what) {
  throw ConfigError(fmt::format("{}:{}: {}", name, v.location().line(), what));
}

double number(const std::string& name, const std::string& key, const config::TomlDoc& v) {
  if (v.is_integer()) return static_cast<double>(v.as_integer());
  if (v.is_floating() && std::isfinite(v.as_floating())) return v.as_floating();
  bad(name, v, fmt::format("{}: expected a {}number, got {}", key, v.is_floating() ? "finite " : "", shown_value(v)));
}

}  // namespace

double Hardware::peak(const std::string& precision) const {
  const double p = precision == "bf16" ? peak_bf16 : precision == "fp32" ? peak_fp32 : -1;
  if (p < 0) throw ConfigError(fmt::format("precision '{}': expected fp32 or bf16", precision));
  if (p == 0) throw ConfigError(fmt::format("hardware '{}' has no {} peak", name, precision));
  return p;
}

Link Hardware::group_link(long long stride, long long members) const {
  if (stride * members <= devices_per_node) return intra;
  // Members per node; a group whose size the node's share does not divide
  // straddles nodes with fewer (8 per node, dp 12: 8 in one node, 4 in the
  // next), and its ring is as fast as its thinnest crossing.
  const long long k = std::gcd(std::max(1LL, devices_per_node / std::max(1LL, stride)), members);
  return {std::min(intra.bandwidth, static_cast<double>(k) * inter.bandwidth), inter.latency};
}

std::vector<std::string> hardware_presets() { return {"h100-sxm", "h200", "a100-80gb", "cpu-local"}; }

std::string hardware_preset_for_gpu(const std::string& device_name) {
  auto has = [&](const char* s) { return device_name.find(s) != std::string::npos; };
  if (has("H200")) return "h200";
  if (has("H100") && !has("PCIe")) return "h100-sxm";
  if (has("A100")) return "a100-80gb";  // 40 and 80 GB, SXM and PCIe: the same compute peaks
  return "";
}

Hardware parse_hardware_toml(const std::string& text, const std::string& name) {
  const config::TomlDoc doc = config::parse_toml(text, name);
  Hardware h;
  h.name = name;
  h.usable_memory_fraction = 0.9;
  h.efficiency = 0.5;
  h.overlap = 1.0;
  std::set<std::string> seen;
  std::map<std::string, int> line_of;  // key -> its line in the file
  // Every unknown key (with the closest known one) and value of the wrong type, by line.
  std::vector<std::pair<size_t, std::string>> unknown;
  std::set<std::string> unchecked;  // keys whose range is not checked: missing, or of the wrong type
  bool misspelt = false;             // an unknown key or table
  auto unknown_key = [&](const config::TomlDoc& v, const std::string& full) {
    misspelt = true;
    std::string best;
    int best_distance = 3;  // suggest only near misses
    auto consider = [&](const std::string& known) {
      if (const int d = config::edit_distance(full, known); d < best_distance) best = known, best_distance = d;
    };
    for (const FileKey& k : file_keys()) consider(std::string(k.section) + "." + k.key);
    for (const char* k : {"node.devices", "node.compute_units", "device.fused_attention", "device.kernels",
                          "intra.bandwidth_gbs", "intra.latency_us", "inter.bandwidth_gbs", "inter.latency_us"})
      consider(k);
    const std::string shown = full.size() > 80 ? full.substr(0, 77) + "..." : full;
    unknown.emplace_back(v.location().line(),
                         fmt::format("{}:{}: unknown key '{}'{}", name, v.location().line(), shown,
                                     best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best)));
  };
  {  // another kind of dtrain file (a training config, a sweep file): one line, not one per key
    if (const std::string other = config::other_file_kind_of(doc.as_table(), config::FileKind::hardware); !other.empty())
      throw ConfigError(fmt::format("{}: not a hardware description but {}; expected a preset ({}) or a file from "
                                    "`dtrain hardware NAME` or `dtrain profile --write-hardware`",
                                    name, other, fmt::join(hardware_presets(), ", ")));
  }
  const std::vector<std::string> tables = {"device", "node", "intra", "inter"};
  for (const auto& [section, body] : doc.as_table()) {
    if (body.is_table() && section != "calibration" &&
        std::find(tables.begin(), tables.end(), section) == tables.end()) {  // one line for the table, not its keys
      std::string best;
      for (const std::string& t : tables)
        if (config::edit_distance(section, t) <= 2) best = t;
      const std::string shown = section.size() > 64 ? section.substr(0, 61) + "..." : section;
      misspelt = true;
      unknown.emplace_back(body.location().line(),
                           fmt::format("{}:{}: unknown table [{}]{}", name, body.location().line(), shown,
                                       best.empty() ? fmt::format(" (expected {})", fmt::join(tables, ", "))
                                                    : fmt::format(" (did you mean [{}]?)", best)));
      continue;
    }
    if (section == "name" || section == "description") {
      if (!body.is_string()) {
        unknown.emplace_back(body.location().line(),
                             fmt::format("{}:{}: {}: expected a string", name, body.location().line(), section));
        continue;
      }
      (section == "name" ? h.name : h.description) = body.as_string().str;
      continue;
    }
    if (section == "calibration") continue;  // free-form: how the numbers were measured
    if (!body.is_table()) {
      unknown_key(body, section);
      continue;
    }
    for (const auto& [key, v] : body.as_table()) try {
      const std::string full = section + "." + key;
      seen.insert(full);
      line_of[full] = static_cast<int>(v.location().line());
      if (section == "node" && (key == "devices" || key == "compute_units")) {
        constexpr int64_t kMost = 1 << 20;  // devices per node, units per node
        if (!v.is_integer() || v.as_integer() < (key == "devices" ? 1 : 0) || v.as_integer() > kMost)
          bad(name, v, fmt::format("node.{}: expected an integer from {} to {}, got {}", key, key == "devices" ? 1 : 0,
                                   kMost, shown_value(v)));
        (key == "devices" ? h.devices_per_node : h.compute_units) = static_cast<int>(v.as_integer());
        continue;
      }
      if (section == "device" && key == "fused_attention") {
        if (!v.is_boolean())
          bad(name, v, fmt::format("device.fused_attention: expected true or false, got {}", shown_value(v)));
        h.fused_attention = v.as_boolean();
        continue;
      }
      if (section == "device" && key == "kernels") {
        const std::string k = v.is_string() ? v.as_string().str : "";
        if (k == "per-op") h.kernels = Kernels::per_op;
        else if (k == "dtrain-cuda") h.kernels = Kernels::dtrain_cuda;
        else if (k == "megatron-2021") h.kernels = Kernels::megatron_2021;
        else if (k == "megatron-core") h.kernels = Kernels::megatron_core;
        else
          bad(name, v,
              fmt::format("device.kernels: expected \"per-op\", \"dtrain-cuda\", \"megatron-2021\" or \"megatron-core\", "
                          "got {}",
                          shown_value(v)));
        continue;
      }
      if ((section == "intra" || section == "inter") && (key == "bandwidth_gbs" || key == "latency_us")) {
        link_field(h, section, key) = number(name, full, v) * (key == "bandwidth_gbs" ? kG : kUs);
        continue;
      }
      const FileKey* fk = nullptr;
      for (const FileKey& k : file_keys())
        if (section == k.section && key == k.key) fk = &k;
      if (!fk) {
        unknown_key(v, full);
        continue;
      }
      h.*(fk->field) = number(name, full, v) * fk->scale;
    } catch (const ConfigError& e) {  // a value of the wrong type: said with the others, its range unchecked
      unknown.emplace_back(v.location().line(), e.what());
      unchecked.insert(section + "." + key);
    }
  }
  // Every problem at once: the keys' own by line, what is missing, then the ranges.
  std::sort(unknown.begin(), unknown.end());
  std::vector<std::string> problems;
  for (auto& [line, what] : unknown) problems.push_back(std::move(what));
  std::vector<std::string> missing;
  for (const FileKey& k : file_keys())
    if (k.required && !seen.count(std::string(k.section) + "." + k.key))
      missing.push_back(std::string(k.section) + "." + k.key);
  for (const char* k : {"node.devices", "intra.bandwidth_gbs", "intra.latency_us", "inter.bandwidth_gbs",
                        "inter.latency_us"})
    if (!seen.count(k)) missing.push_back(k);
  // (Where a key or table is unknown, what it misspells would be said missing again.)
  if (!missing.empty() && !misspelt) problems.push_back(fmt::format("{}: missing {}", name, fmt::join(missing, ", ")));
  unchecked.insert(missing.begin(), missing.end());
  // Figures no device has (in the file's units): a typo's 1e-300 GiB or 1e300
  // us would plan nonsense rather than fail.
  // "name:line" of a key the file gives ("name" for a default).
  auto at = [&](const std::string& key) {
    const auto it = line_of.find(key);
    return it == line_of.end() ? name : fmt::format("{}:{}", name, it->second);
  };
  auto within = [&](const char* what, double x, double scale, double lo, double hi) {
    if (!unchecked.count(what) && !(x / scale >= lo && x / scale <= hi))
      problems.push_back(fmt::format("{}: {} must be in [{:.10g}, {:.10g}], got {:.10g}", at(what), what, lo, hi,
                                     x / scale));
  };
  within("device.memory_gib", h.memory_bytes, kGiB, 1.0 / 1024, 1e6);  // 1 MiB to 1 PiB
  within("device.peak_tflops_fp32", h.peak_fp32, kT, 1e-6, 1e6);       // 1 MFLOP/s to 1 EFLOP/s
  within("device.peak_tflops_bf16", h.peak_bf16, kT, 0, 1e6);          // 0: no bf16
  within("device.memory_bandwidth_gbs", h.memory_bandwidth, kG, 1e-3, 1e6);
  within("intra.bandwidth_gbs", h.intra.bandwidth, kG, 1e-6, 1e6);
  within("inter.bandwidth_gbs", h.inter.bandwidth, kG, 1e-6, 1e6);
  within("node.tp_bandwidth_gbs", h.tp_bandwidth, kG, 0, 1e6);  // 0: the link's
  within("node.sp_bandwidth_gbs", h.sp_bandwidth, kG, 0, 1e6);
  within("node.host_bandwidth_gbs", h.host_bandwidth, kG, 0, 1e6);  // 0: not given
  within("device.layer_overhead_us", h.layer_overhead, kUs, 0, 1e6);  // at most a second
  within("intra.latency_us", h.intra.latency, kUs, 0, 1e6);
  within("inter.latency_us", h.inter.latency, kUs, 0, 1e6);
  within("node.handoff_us", h.handoff_latency, kUs, 0, 1e6);
  within("device.gemm_half_dim", h.gemm_half_dim, 1, 0, 1e9);
  auto fraction = [&](const char* what, double x) {
    if (!unchecked.count(what) && !(x > 0 && x <= 1)) problems.push_back(fmt::format("{}: {} must be in (0, 1], got {:.10g}", at(what), what, x));
  };
  fraction("device.usable_memory_fraction", h.usable_memory_fraction);
  fraction("device.efficiency", h.efficiency);
  if (!(h.overlap >= 0 && h.overlap <= 1))
    problems.push_back(fmt::format("{}: node.overlap must be in [0, 1], got {:.10g}", at("node.overlap"), h.overlap));
  if (!(h.tp_overlap >= 0 && h.tp_overlap <= 1))
    problems.push_back(
        fmt::format("{}: node.tp_overlap must be in [0, 1], got {:.10g}", at("node.tp_overlap"), h.tp_overlap));
  if (!(h.comm_compute_share >= 0 && h.comm_compute_share < 1))
    problems.push_back(
        fmt::format("{}: device.comm_compute_share must be in [0, 1), got {:.10g}", at("device.comm_compute_share"),
                    h.comm_compute_share));
  if (!(h.tp_comm_compute_share < 1))
    problems.push_back(fmt::format("{}: device.tp_comm_compute_share must be below 1 (negative: comm_compute_share), "
                                   "got {:.10g}",
                                   at("device.tp_comm_compute_share"), h.tp_comm_compute_share));
  if (!problems.empty()) throw ConfigError(problems);
  return h;
}

Hardware load_hardware(const std::string& name_or_path) {
  if (name_or_path == "h100-sxm") return h100_sxm();
  if (name_or_path == "h200") return h200();
  if (name_or_path == "a100-80gb") return a100_80gb();
  if (name_or_path == "cpu-local") return cpu_local();
  const bool path = name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".toml");
  if (!path)
    throw ConfigError(fmt::format("hardware '{}': not a preset ({}) nor a .toml file{}", name_or_path,
                                  fmt::join(hardware_presets(), ", "),
                                  config::did_you_mean(config::suggest_among(name_or_path, hardware_presets()))));
  return parse_hardware_toml(config::read_toml_file(name_or_path, "hardware file"), name_or_path);
}

std::string shortened(const std::string& text) {
  constexpr size_t kMost = 1000;  // well inside the 4096 bytes a line of a TOML file dtrain reads may have
  if (text.size() <= kMost) return text;
  size_t cut = kMost - 3;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
  return text.substr(0, cut) + "...";
}

std::string write_hardware_toml(const Hardware& h) {
  auto line = [](const char* key, const std::string& value, const char* help) {
    return fmt::format("{:<30} # {}\n", fmt::format("{} = {}", key, value), help);
  };
  auto num = [](double x) { return fmt::format("{:.6g}", x); };
  auto quoted = [](const std::string& text) { return config::toml_string(shortened(text)); };
  std::string out = std::string(kHardwareFileHeader) + " (format: docs/planner.md)\n";
  out += fmt::format("name = {}\ndescription = {}\n\n[device]\n", quoted(h.name), quoted(h.description));
  out += line("memory_gib", num(h.memory_bytes / kGiB), "memory per device");
  out += line("usable_memory_fraction", num(h.usable_memory_fraction), "left after runtime, allocator slack, workspaces");
  out += line("peak_tflops_fp32", num(h.peak_fp32 / kT), "peak per device");
  out += line("peak_tflops_bf16", num(h.peak_bf16 / kT), "peak per device; 0 = no bf16");
  out += line("efficiency", num(h.efficiency), "achievable fraction of peak for a large matrix product");
  out += line("gemm_half_dim", num(h.gemm_half_dim), "smallest dimension at half that fraction; 0 = flat");
  out += line("memory_bandwidth_gbs", num(h.memory_bandwidth / kG), "achievable, for memory-bound passes");
  out += line("fused_attention", h.fused_attention ? "true" : "false", "attention kernel keeps no score matrix");
  out += line("kernels", quoted(kernels_name(h.kernels)), "memory-bound kernels: per-op, dtrain-cuda, megatron-2021, megatron-core");
  out += line("layer_overhead_us", num(h.layer_overhead / kUs), "fixed cost per layer per forward or backward");
  out += line("comm_compute_share", num(h.comm_compute_share), "compute a collective takes from the pass it hides behind");
  out += line("tp_comm_compute_share", num(h.tp_comm_compute_share), "the same for tp's collectives; < 0 = comm_compute_share");
  out += "\n[node]\n";
  out += line("devices", std::to_string(h.devices_per_node), "devices sharing the intra-node links");
  out += line("overlap", num(h.overlap), "fraction of the backward the dp reduction overlaps");
  out += line("tp_overlap", num(h.tp_overlap), "fraction of tp communication hidden behind compute");
  out += line("compute_units", std::to_string(h.compute_units), "units the devices share (ranks per core); 0 = one each");
  out += line("handoff_us", num(h.handoff_latency / kUs), "extra latency of a message to a waiting rank (stage boundary)");
  out += line("tp_bandwidth_gbs", num(h.tp_bandwidth / kG), "tp all-reduces inside a step; 0 = the link's");
  out += line("sp_bandwidth_gbs", num(h.sp_bandwidth / kG), "sequence parallel's instead; 0 = tp_bandwidth_gbs");
  out += line("host_bandwidth_gbs", num(h.host_bandwidth / kG), "device-host copies, all devices at once; 0 = not given");
  for (auto [section, link] : {std::pair{"intra", &h.intra}, std::pair{"inter", &h.inter}}) {
    out += fmt::format("\n[{}]\n", section);
    out += line("bandwidth_gbs", num(link->bandwidth / kG), "per device and direction (NCCL bus bandwidth)");
    out += line("latency_us", num(link->latency / kUs), "per message or ring step");
  }
  return out;
}

}  // namespace dtrain
