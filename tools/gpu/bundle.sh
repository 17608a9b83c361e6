#!/usr/bin/env bash
# Prepares .gpu/, what travels to a GPU machine that has no package registry
# (tools/gpu/accept.sh runs there from it):
#   .gpu/bin   dtrain and test_cuda, built here for any x86-64 CPU (no
#              -march=native) with sm_90 code, stripped, without a RUNPATH
#              (on the GPU machine LD_LIBRARY_PATH alone picks the libraries);
#   .gpu/debs  the Debian packages of every library they load that is neither
#              glibc nor CUDA (Open MPI with its launcher and plugins' needs,
#              HDF5, fmt, OpenBLAS), unpacked there with dpkg -x into a scratch
#              folder; cuBLASLt, cuDNN and NCCL come from the machine's PyTorch wheels;
#   .gpu/data  the byte-level Bible token files (shipped data, made by tools/setup.sh).
# .gpu/ is ignored (.gitignore); pass it in the device tool's `carry`. Run
# after tools/setup.sh. Takes a build of its own (build-gpu/; DTRAIN_JOBS
# parallel jobs, default all cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${DTRAIN_GPU_BUILD:-build-gpu}

cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDTRAIN_CUDA=ON -DDTRAIN_NATIVE=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_SKIP_BUILD_RPATH=ON -DDTRAIN_SANITIZE=OFF >/dev/null
ninja -C "$B" -j "${DTRAIN_JOBS:-$(nproc)}" dtrain test_cuda test_cuda_dist

rm -rf .gpu && mkdir -p .gpu/bin .gpu/debs .gpu/data
for b in dtrain tests/test_cuda tests/test_cuda_dist; do strip -o ".gpu/bin/$(basename "$b")" "$B/$b"; done

# Packages: a list known to make a relocated Open MPI work (its plugins load
# libraries ldd does not see), plus whatever ldd finds outside glibc and CUDA.
pkgs=(libopenmpi3 libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 libucx0
  libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libpsm2-2 libpsm-infinipath1 libnuma1 libltdl7
  openmpi-bin openmpi-common libhdf5-103-1 libsz2 libaec0 libcurl4 libnghttp2-14 librtmp1 libssh2-1
  libpsl5 libfmt9 libopenblas0-openmp libgfortran5 libquadmath0 libgomp1)
while read -r lib; do
  case "$lib" in */libc.so*|*/libm.so*|*/libpthread*|*/libdl.so*|*/librt.so*|*/ld-linux*|*/libstdc++*|*/libgcc_s*|/usr/local/cuda*) continue ;; esac
  p=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1) || true
  [ -n "$p" ] && pkgs+=("$p")
done < <(ldd .gpu/bin/dtrain .gpu/bin/test_cuda .gpu/bin/test_cuda_dist | awk '/=> \//{print $3}' | sort -u)
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
(cd .gpu/debs && apt-get download "${pkgs[@]}" >/dev/null)

cp data/kjv_train.bin data/kjv_val.bin .gpu/data/
du -sh .gpu .gpu/* | sed 's/^/bundle: /'
echo "bundle: ready; on the GPU machine: bash tools/gpu/accept.sh (carry .gpu)"
