#!/usr/bin/env bash
# The prepared GPU check, for a machine with an NVIDIA GPU, no network and maybe no Node.
#   scripts/gpu-check.sh pack                 here, after `npm ci`: bundles what the check needs into
#                                             .cache/gpu-check.tar.xz (a node binary, the check bundled
#                                             by esbuild, dawn.node, the Vulkan loader, the torch anchor)
#   scripts/gpu-check.sh run [PACK] [OPTIONS] there: unpacks PACK (default .cache/gpu-check.tar.xz, or the
#                                             pack this script sits in) and runs the check; OPTIONS go to it
#                                             (--allow-software, --preset tiny, --batches 16,64, ...)
# The run prints the adapter, the seed's step on webgpu against wasm at batch 16, 64 and 128 (first step
# apart), tensor and memory growth over 20 webgpu steps and, where python3 has CUDA torch, PyTorch's step
# (TF32 off, on); then a JSON summary, also written to $OUT (or $PWD)/gpu-check.json. About 5 minutes.
# Without an NVIDIA GPU it says so and exits 3 (after checking that the pack unpacks and its node runs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_BYTES=$((64 * 1024 * 1024))
say() { echo "gpu-check: $*"; }
die() { echo "gpu-check: $1" >&2; exit "${2:-1}"; }

# The Vulkan loader Dawn dlopens: the system's, as a file we can copy.
find_libvulkan() {
  local p
  p=$(ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')
  for f in "$p" /usr/lib/x86_64-linux-gnu/libvulkan.so.1 /usr/lib64/libvulkan.so.1 /usr/lib/libvulkan.so.1; do
    [ -n "$f" ] && [ -e "$f" ] && { readlink -f "$f"; return 0; }
  done
  return 1
}

pack() {
  local repo out stage app node lib
  repo=$(cd "$here/.." && pwd)
  out="$repo/.cache/gpu-check.tar.xz"
  stage="$repo/.cache/gpu-check-stage/gpu-check"
  cd "$repo"
  [ "$(uname -m)" = x86_64 ] || die "pack: the GPU machine is x86-64; this is $(uname -m), whose node and dawn.node would not run there"
  [ -x node_modules/.bin/esbuild ] || die "pack: node_modules/.bin/esbuild is missing (it comes with tsx): run npm ci"
  [ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || die "pack: node_modules/webgpu is missing (an optional dependency): npm install webgpu"
  [ -f node_modules/@tensorflow/tfjs-backend-webgpu/package.json ] || die "pack: @tensorflow/tfjs-backend-webgpu is missing: npm install @tensorflow/tfjs-backend-webgpu"
  command -v xz > /dev/null || die "pack: xz is missing (apt-get install xz-utils)"
  node=$(readlink -f "${GPU_CHECK_NODE:-$(command -v node)}")
  lib=$(find_libvulkan) || die "pack: no libvulkan.so.1 here to carry (apt-get install libvulkan1)"
  rm -rf "$(dirname "$stage")" && mkdir -p "$stage/bin" "$stage/lib" "$stage/app"
  app="$stage/app"

  # The check in one file. Its CommonJS dependencies (tfjs) read require and __dirname, which an
  # ES module lacks: the banner defines them (the wasm backend finds its .wasm files by __dirname).
  local banner="import { createRequire as __ganDistRequire } from 'node:module'; import { fileURLToPath as __ganDistPath } from 'node:url'; import { dirname as __ganDistDir } from 'node:path'; const require = __ganDistRequire(import.meta.url); const __filename = __ganDistPath(import.meta.url); const __dirname = __ganDistDir(__filename);"
  node_modules/.bin/esbuild scripts/gpu-check/entry.mjs --bundle --format=esm --platform=node --target=node20 \
    --outfile="$app/check.mjs" --log-level=warning "--banner:js=$banner"
  cp node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$app/"
  # What worker/ imports by a variable name at run time, and the package.json files whose versions
  # protocol/backends.ts reads (installedVersion).
  mkdir -p "$app/node_modules/webgpu/dist/linux-x64" "$app/node_modules/@tensorflow/tfjs-backend-webgpu" \
    "$app/node_modules/@tensorflow/tfjs-backend-wasm"
  cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$app/node_modules/webgpu/"
  cp node_modules/webgpu/dist/linux-x64/dawn.node "$app/node_modules/webgpu/dist/linux-x64/"
  cp scripts/gpu-check/webgpu-stub.mjs "$app/node_modules/@tensorflow/tfjs-backend-webgpu/index.mjs"
  local v
  v=$(node -p "require('./node_modules/@tensorflow/tfjs-backend-webgpu/package.json').version")
  printf '{"name":"@tensorflow/tfjs-backend-webgpu","version":"%s","type":"module","main":"index.mjs"}\n' "$v" \
    > "$app/node_modules/@tensorflow/tfjs-backend-webgpu/package.json"
  v=$(node -p "require('./node_modules/@tensorflow/tfjs-backend-wasm/package.json').version")
  printf '{"name":"@tensorflow/tfjs-backend-wasm","version":"%s"}\n' "$v" > "$app/node_modules/@tensorflow/tfjs-backend-wasm/package.json"

  # Node without its debug sections (the dynamic symbols dawn.node binds to stay).
  if command -v strip > /dev/null; then strip --strip-debug -o "$stage/bin/node" "$node"; else cp "$node" "$stage/bin/node"; fi
  cp "$lib" "$stage/lib/libvulkan.so.1"
  cp scripts/torch-step.py scripts/gpu-check.sh "$stage/"
  {
    echo "gan-dist gpu-check pack, $(date -u +%FT%TZ), from $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($(git status --porcelain 2>/dev/null | wc -l) files changed)"
    echo "node $("$stage/bin/node" --version) from $node"
    echo "webgpu $(node -p "require('./node_modules/webgpu/package.json').version") (dawn.node), libvulkan.so.1 from $lib"
  } > "$stage/MANIFEST.txt"
  "$stage/bin/node" --check "$app/check.mjs" || die "pack: the bundle does not parse"

  say "compressing (xz -9, a minute or two)"
  tar -C "$(dirname "$stage")" -cf - gpu-check | xz -9 -T1 > "$out.partial"
  mv "$out.partial" "$out"
  (cd "$stage" && du -b bin/node app/node_modules/webgpu/dist/linux-x64/dawn.node app/check.mjs lib/libvulkan.so.1 | awk '{printf "gpu-check:   %7.1f MB  %s\n", $1 / 1e6, $2}')
  local size
  size=$(stat -c %s "$out")
  say "$(du -sb "$stage" | awk '{printf "%.1f MB", $1 / 1e6}') unpacked, $(awk -v s="$size" 'BEGIN {printf "%.1f MiB", s / 1048576}') as $out"
  [ "$size" -le "$MAX_BYTES" ] || die "pack: $out is over 64 MiB"
  rm -rf "$(dirname "$stage")"
}

# Sets VK_DRIVER_FILES to the NVIDIA driver's Vulkan ICD (writing one if the driver ships none), and
# LD_LIBRARY_PATH to the carried loader where the system has none.
vulkan_env() {
  local dir=$1 icd="" f glx
  # GPU_CHECK_LOADER=carried uses the carried loader even where the system has one.
  if [ "${GPU_CHECK_LOADER:-}" = carried ] || ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
    export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  [ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/nvidia/lib64"
  for f in ${VK_DRIVER_FILES:-} ${VK_ICD_FILENAMES:-} /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json \
    /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /usr/local/share/vulkan/icd.d/nvidia_icd*.json /usr/local/nvidia/icd.d/nvidia_icd*.json; do
    [ -f "$f" ] && { icd=$f; break; }
  done
  if [ -z "$icd" ]; then
    # The driver's Vulkan ICD lives in libGLX_nvidia.so.0; a manifest naming it is all the loader needs.
    glx=""
    for f in "$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0/ {print $NF; exit}')" \
      /usr/local/nvidia/lib64/libGLX_nvidia.so.0 /usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0; do
      if [ -n "$f" ] && [ -e "$f" ]; then glx=$f; break; fi
    done
    if [ -n "$glx" ]; then
      icd="$dir/nvidia_icd.json"
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$glx" > "$icd"
      say "no NVIDIA Vulkan ICD file found: wrote $icd for $glx"
    fi
  fi
  if [ -n "$icd" ]; then
    export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
    say "Vulkan ICD $icd; loader $( [ -n "${LD_LIBRARY_PATH:-}" ] && echo "from LD_LIBRARY_PATH=$LD_LIBRARY_PATH" || echo "the system's")"
  else
    say "no NVIDIA Vulkan ICD found (no nvidia_icd.json, no libGLX_nvidia.so.0): Dawn will see what the system offers"
  fi
}

run() {
  local pack="" dir node allow=0 a results rc
  if [ $# -gt 0 ] && [ -e "$1" ]; then pack=$1; shift
  elif [ -x "$here/bin/node" ]; then pack=$here
  else pack="$(cd "$here/.." && pwd)/.cache/gpu-check.tar.xz"
  fi
  for a in "$@"; do [ "$a" = --allow-software ] && allow=1; done
  if [ -d "$pack" ]; then dir=$(cd "$pack" && pwd)
  else
    [ -f "$pack" ] || die "run: no pack at $pack (make one with \`scripts/gpu-check.sh pack\`)"
    dir="${TMPDIR:-/tmp}/gan-dist-gpu-check"
    rm -rf "$dir" && mkdir -p "$dir"
    if command -v xz > /dev/null; then xz -dc "$pack" | tar -C "$dir" -xf -
    else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$pack" "$dir"
    fi
    dir="$dir/gpu-check"
  fi
  [ -f "$dir/MANIFEST.txt" ] && sed 's/^/gpu-check: pack: /' "$dir/MANIFEST.txt"
  node="$dir/bin/node"
  if ! "$node" --version > /dev/null 2>&1; then
    command -v node > /dev/null || die "run: the carried node does not run here ($("$node" --version 2>&1 | head -1)) and there is no other"
    say "the carried node does not run here; using $(command -v node) $(node --version)"
    node=$(command -v node)
  fi
  say "node $("$node" --version), $(nproc) cores, $(uname -r)"

  if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu-check: GPU /'
  elif ls /dev/nvidia[0-9]* > /dev/null 2>&1; then
    say "no nvidia-smi, but $(ls /dev/nvidia[0-9]* | tr '\n' ' ')"
  elif [ $allow = 1 ]; then
    say "no NVIDIA GPU here: running on what Dawn finds, as asked (--allow-software)"
  else
    die "no NVIDIA GPU here (nvidia-smi lists none, no /dev/nvidia*): this check is for a machine with one. The pack unpacked and its node runs, so it is ready to carry (--allow-software runs it anyway)" 3
  fi
  vulkan_env "$dir"

  results=${GPU_CHECK_OUT:-${OUT:-$PWD}}
  mkdir -p "$results"
  rc=0
  timeout "${GPU_CHECK_TIMEOUT:-480}" "$node" "$dir/app/check.mjs" --torch "$dir/torch-step.py" --python "${PYTHON:-python3}" \
    --out "$results/gpu-check.json" "$@" 2>&1 | tee "$results/gpu-check.log" || rc=${PIPESTATUS[0]}
  [ "$rc" = 124 ] && say "the check ran past ${GPU_CHECK_TIMEOUT:-480} s and was stopped"
  say "exit $rc; summary in $results/gpu-check.json, log in $results/gpu-check.log"
  return "$rc"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) die "usage: $0 pack | run [PACK] [--allow-software] [--preset NAME] [--batches 16,64,128] ..." 2 ;;
esac
