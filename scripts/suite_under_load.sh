#!/usr/bin/env bash
# Run the whole test suite RUNS times in a row (default 3) while two CPU-burning processes keep
# both cores of a 2-core machine busy; stop at the first red run. Extra arguments go to pytest.
#   scripts/suite_under_load.sh            # from the repository root, in the test venv
#   RUNS=1 scripts/suite_under_load.sh -x tests/integration
set -euo pipefail
cd "$(dirname "$0")/.."
python scripts/burn_cpu.py --workers "${WORKERS:-2}" --seconds 7200 &
burner=$!
trap 'kill "$burner" 2>/dev/null || true' EXIT
for run in $(seq 1 "${RUNS:-3}"); do
  echo "=== run $run of ${RUNS:-3} beside ${WORKERS:-2} CPU burners (load $(cut -d' ' -f1 /proc/loadavg))"
  python -m pytest -q -p no:cacheprovider "$@"
done
