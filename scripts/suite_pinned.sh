#!/usr/bin/env bash
# Run the whole test suite with the wall clock pinned (libfaketime, from the test extras) to a
# New York time, default 23:30 today, when New York's date is already tomorrow in UTC; the
# clock runs on from there. Every process the tests start inherits the same clock.
#   scripts/suite_pinned.sh                          # 23:30 New York
#   WHEN=2026-03-08T23:30 scripts/suite_pinned.sh    # the spring-forward day
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(python - <<'PY'
import os, time
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.integration.conftest import pinned_clock_env

ny = ZoneInfo("America/New_York")
when = os.environ.get("WHEN")
now = (
    datetime.fromisoformat(when).replace(tzinfo=ny)
    if when
    else datetime.now(ny).replace(hour=23, minute=30, second=0, microsecond=0)
)
print(f"echo 'pinned clock: {now.isoformat()}' >&2")
for key, value in pinned_clock_env(now).items():
    print(f"export {key}='{value}'")
PY
)"
python -c "import datetime, zoneinfo; print('the tests see', datetime.datetime.now(zoneinfo.ZoneInfo('America/New_York')))"
python -m pytest -q -p no:cacheprovider "$@"
