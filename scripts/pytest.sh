#!/usr/bin/env bash
# pytest from the project venv; a tier that selects no test (exit 5) is not a failure.
#   scripts/pytest.sh ARGS...          one pytest
#   scripts/pytest.sh --lanes ARGS...  two pytest processes side by side (make test): the
#       notebooks lane (unit + notebooks) and the services lane (integration, grading,
#       browser). Their tests wait on real control loops more than they compute, so two
#       lanes use the two cores; what is global to the machine (the engine's Swarm) is
#       held by one test at a time through tests/conftest.py's machine_lock.
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
lane notebooks "unit or notebooks" "$@" &
lane services "integration or grading or browser" "$@" &
wait
rc=0
for name in notebooks services; do
  r=$(cat "$tmp/$name.rc" 2>/dev/null || echo 1)
  ok "$r" && state=passed || { state="FAILED (pytest exit $r)"; rc=1; }
  echo "lane $name: $state"
done
wall=$((SECONDS - start))
echo "both lanes: $wall s wall clock"
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
