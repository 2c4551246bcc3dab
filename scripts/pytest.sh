#!/usr/bin/env bash
# pytest from the project venv; a tier that selects no test (exit 5) is not a failure.
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
[ "$rc" -eq 5 ] && { echo "(no tests selected)"; rc=0; }
exit "$rc"
