// What the planner needs to know about the machines: per device, its memory,
// peak FLOP/s per precision and the fraction of it the layers' matrix products
// achieve, its memory bandwidth; per node, how many devices share the fast
// links; and the two links' bandwidth and latency. Built-in presets (H100 SXM,
// A100 80 GB, this CPU machine) and TOML files in the same format, which
// `dtrain profile --write-hardware` writes from measurements. The format is documented in
// docs/planner.md; write_hardware_toml(preset) prints a template.
#pragma once

#include <string>
#include <vector>

namespace dtrain {

// One kind of link between two devices. Bandwidth is per device and per
// direction (what one device can send while all of them send), as NCCL's
// "bus bandwidth" reports it; latency is per message or ring step.
struct Link {
  double bandwidth = 0;  // bytes/s
  double latency = 0;    // s
};

// The backend's memory-bound kernels (layer norms, dropouts, residual adds,
// biases, GELU, softmax, the loss): which passes over memory they make, so
// which bytes a GPT block moves per token (docs/planner.md, "Memory-bound
// passes", derives each set from the code).
enum class Kernels {
  per_op,         // every operation its own pass: the count dtrain profile calibrates with (the CPU backend)
  dtrain_cuda,    // lib/kernels/cuda: bias and GELU in the products' epilogues, dropout + residual fused
  megatron_2021,  // Megatron-LM 2021: JIT bias-GeLU and bias-dropout-add, fused softmax, apex layer norm
  megatron_core,  // Megatron-Core r0.8 (2024) with Transformer Engine: its layer norms, biases in the products
};
const char* kernels_name(Kernels k);  // "per-op" | "dtrain-cuda" | "megatron-2021" | "megatron-core"

struct Hardware {
  std::string name;         // "h100-sxm", or the file's name
  std::string description;  // one line: what was measured or assumed, and where
  // Device.
  double memory_bytes = 0;              // per device
  double usable_memory_fraction = 0.9;  // left after the runtime, allocator slack and workspaces
  double peak_fp32 = 0;                 // FLOP/s per device
  double peak_bf16 = 0;                 // FLOP/s per device; 0 = no bf16
  // Achievable fraction of peak for a large matrix product; a product whose
  // smallest dimension is x reaches efficiency x / (x + gemm_half_dim)
  // (0 = every shape the same; see gemm_efficiency).
  double efficiency = 0.5;
  double gemm_half_dim = 0;
  // Achievable bytes/s of memory-bound passes: the optimizer update, layer
  // norms, softmax, GELU, residual adds, dropout, cross-entropy.
  double memory_bandwidth = 0;
  // The backend's attention kernel: fused (flash-style: the score matrix is
  // never stored, the backward remakes it) or materialised (the scores kept
  // for the backward, softmax a memory-bound pass over them).
  bool fused_attention = false;
  Kernels kernels = Kernels::per_op;
  // Share of the device's compute that a collective running beside it takes:
  // on a GPU the SMs its kernels occupy (NCCL runs a CTA per channel, each on
  // an SM of its own), so a pass that hides T seconds of communication runs
  // share x T longer. 0: hidden communication costs the compute nothing (the
  // CPU's calibrated overlap already measures what the ranks' progress costs).
  double comm_compute_share = 0;
  // The same for the tensor-parallel group's collectives, where the runtime
  // runs them otherwise (< 0: comm_compute_share). Transformer Engine's
  // userbuffers move half of a block's tp traffic with the copy engines.
  double tp_comm_compute_share = -1;
  double tp_share() const { return tp_comm_compute_share >= 0 ? tp_comm_compute_share : comm_compute_share; }
  double layer_overhead = 0;            // s per top-level layer per forward or backward (launches)
  // Node and links.
  int devices_per_node = 1;
  Link intra;  // between devices of one node (NVLink, shared memory)
  Link inter;  // between nodes (InfiniBand, Ethernet), per device
  // Fraction of the backward during which the data-parallel gradient
  // reduction makes progress (1 = fully concurrent, as with NCCL on its own
  // stream; less where communication competes with compute for the cores).
  double overlap = 1.0;
  // Fraction of tensor-parallel communication the runtime hides behind the
  // matrix products (0: after the compute it belongs to, as this trainer does).
  double tp_overlap = 0;
  // Compute units the node's devices share; 0 = one each. Fewer than
  // devices_per_node (several MPI ranks per CPU core): a device computes at a
  // whole unit's rate while others wait, and the node's busy time is bounded
  // by its units.
  int compute_units = 0;
  // Extra latency of a point-to-point message whose receiver is waiting for
  // it (a pipeline stage boundary), beyond the link's: where ranks share
  // cores, the waiting rank has given its core away and must be scheduled
  // again. 0 = none (devices that poll on their own core or stream).
  double handoff_latency = 0;  // s
  // Bus bandwidth of the tensor-parallel all-reduces inside a training step,
  // where it differs from the link's (bytes/s; 0 = the link's). Measured by
  // `dtrain profile --write-hardware` where ranks share cores: there the
  // all-reduces of activations compete with the ranks' own compute for the
  // cores and caches, and a step at tp n cost more than the link's bandwidth,
  // measured with nothing else running, says.
  double tp_bandwidth = 0;
  // The same for sequence parallelism's reduce-scatters and all-gathers,
  // which replace those all-reduces with their own implementations (bytes/s;
  // 0 = tp_bandwidth's).
  double sp_bandwidth = 0;
  // Copies between a device and host memory, per device and direction when
  // every device of the node copies at once (bytes/s; 0 = not given). Only a
  // runtime that keeps activation checkpoints in host memory uses it
  // (Features::host_checkpoints); this trainer keeps them on the device.
  double host_bandwidth = 0;
  // Efficiency of a matrix product whose smallest dimension is x (x <= 0:
  // unknown shape, the large-product efficiency).
  double gemm_efficiency(double x) const {
    return x <= 0 || gemm_half_dim <= 0 ? efficiency : efficiency * x / (x + gemm_half_dim);
  }
  int units() const { return compute_units > 0 ? compute_units : devices_per_node; }
  // Whether this describes GPUs: their kernels are a GPU backend's (the
  // presets, a GPU's calibrated file); the CPU backend's are per_op.
  bool gpu() const { return kernels != Kernels::per_op; }
  // The half dimension of a harmonic roofline: a 16-bit product whose
  // smallest dimension is x does 2 M N x FLOPs on about 2 M N bytes (x FLOP
  // per byte), so 1 / rate = 1 / (efficiency peak) + 1 / (x bandwidth), i.e.
  // efficiency x / (x + efficiency peak / bandwidth) of peak. The GPU presets
  // take gemm_half_dim from it: the higher a device's peak over its
  // bandwidth, the larger a product must be to run near that peak.
  double roofline_half_dim() const { return efficiency * peak_bf16 / memory_bandwidth; }

  // Peak FLOP/s for "fp32" or "bf16"; throws ConfigError for a precision the
  // device lacks.
  double peak(const std::string& precision) const;
  // The link between two devices: intra-node when a group of `span`
  // consecutive ranks fits in one node.
  const Link& link(long long span) const { return span <= devices_per_node ? intra : inter; }
  // The link a collective over `members` ranks `stride` apart gets (data
  // parallelism: stride tp, members dp). Within a node, intra. Across nodes,
  // the k = devices_per_node / stride members in each node reach the next node
  // through one crossing of the ring (NCCL runs the node's part over the fast
  // link), so the node's inter-node capacity, `inter` per device, is shared
  // by devices_per_node / k rings: each gets k x inter, at most intra.
  Link group_link(long long stride, long long members) const;
};

// Names of the built-in presets: "h100-sxm", "h200", "a100-80gb", "cpu-local".
std::vector<std::string> hardware_presets();
// The preset of a GPU by its CUDA device name ("NVIDIA H200" -> "h200",
// "NVIDIA H100 80GB HBM3" -> "h100-sxm", "NVIDIA A100-SXM4-80GB" ->
// "a100-80gb"); "" for any other (an H100 PCIe's peaks are not the SXM's).
// `dtrain profile` on a GPU takes MFU's peak from it.
std::string hardware_preset_for_gpu(const std::string& device_name);
// A preset by name, or a TOML file by path (anything with a '/' or ending in
// ".toml"). Throws ConfigError naming the problem (unknown preset with the
// list, unreadable file, missing or bad key with its line).
Hardware load_hardware(const std::string& name_or_path);
// Parses the TOML text of a hardware file; `name` is used in messages.
Hardware parse_hardware_toml(const std::string& text, const std::string& name);
// The first line of every file write_hardware_toml writes (what
// `dtrain profile --write-hardware` may replace).
inline constexpr const char* kHardwareFileHeader = "# dtrain hardware description";
// `text`, at most 1000 bytes of it (then ending "..."): for a string a
// written file holds (a path, a command) and must read back.
std::string shortened(const std::string& text);
// The hardware as a TOML file that parse_hardware_toml reads back.
std::string write_hardware_toml(const Hardware& hw);

}  // namespace dtrain
