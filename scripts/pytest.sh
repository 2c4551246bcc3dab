#!/usr/bin/env bash
# pytest from the project venv; a tier that selects no test (exit 5) is not a failure.
#   scripts/pytest.sh ARGS...          one pytest
#   scripts/pytest.sh --lanes ARGS...  pytest processes side by side (make test): the
#       notebooks lane (unit + notebooks) and $CLOUDLAB_TEST_LANES (default 3) service
#       lanes (integration, grading, browser), whole files each, balanced on the seconds
#       each file took last time (tests/lanes.py). The tests wait on real control loops
#       more than they compute, so four lanes beat fewer on two cores
#       (bench/test_times.py reports what this machine took); what is global to the
#       machine (the engine's Swarm, the real node, the hub) is held by one test at a
#       time through tests/conftest.py's machine_lock.
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/python -m pytest)

ok() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }

if [ "${1:-}" != "--lanes" ]; then
  "${PYTEST[@]}" "$@"
  rc=$?
  [ "$rc" -eq 5 ] && { echo "(no tests selected)"; rc=0; }
  exit "$rc"
fi
shift
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
lane() {  # name, marker expression, pytest args...
  local name=$1 marks=$2; shift 2
  "${PYTEST[@]}" -m "$marks" -o cache_dir=".pytest_cache/$name" --basetemp="$tmp/$name" \
    "$@" 2>&1 | sed -u "s/^/[$name] /"
  echo "${PIPESTATUS[0]}" > "$tmp/$name.rc"
}
start=$SECONDS
export CLOUDLAB_RECORD_DURATIONS=1
names=(notebooks)
lane notebooks "unit or notebooks" "$@" tests &
i=0
while read -r files; do
  [ -n "$files" ] || continue
  i=$((i + 1)); names+=("services$i")
  # shellcheck disable=SC2086  # a lane's files, one word each
  lane "services$i" "integration or grading or browser" "$@" $files &
done < <("${PYTEST[0]}" -m tests.lanes "${CLOUDLAB_TEST_LANES:-3}")
wait
rc=0
for name in "${names[@]}"; do
  r=$(cat "$tmp/$name.rc" 2>/dev/null || echo 1)
  ok "$r" && state=passed || { state="FAILED (pytest exit $r)"; rc=1; }
  echo "lane $name: $state"
done
wall=$((SECONDS - start))
echo "all lanes: $wall s wall clock"
# a record for bench/test_times.py: how long people wait for make test, warm and fresh
if [ -n "${CLOUDLAB_TEST_SINCE:-}" ]; then
  times="${XDG_CACHE_HOME:-$HOME/.cache}/cloudlab/test-times.jsonl"
  mkdir -p "$(dirname "$times")"
  printf '{"finished": %s, "pytest_s": %s, "total_s": %s, "fresh": %s, "passed": %s, "checkout": "%s"}\n' \
    "$(date +%s)" "$wall" "$(( $(date +%s) - CLOUDLAB_TEST_SINCE ))" \
    "$([ "${CLOUDLAB_TEST_FRESH:-no}" = yes ] && echo true || echo false)" \
    "$([ "$rc" -eq 0 ] && echo true || echo false)" "$PWD" >> "$times"
fi
exit "$rc"
