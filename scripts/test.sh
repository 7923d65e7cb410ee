#!/usr/bin/env bash
# The test command (README, .ci/run, tox -e test): the fast test suite, spec validation, every implemented
# artefact at smoke scale, then the comparison report against the paper. Slow tests: `pytest -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
PY=.venv/bin/python
set +e
$PY -m pytest -q -p no:cacheprovider 2>&1 | tee .cache/pytest.log
pytest_rc=${PIPESTATUS[0]}
set -e
$PY -m bench check
$PY -m bench all --scale smoke
$PY -m bench report
# One closing line with the test counts, so the log ends with both the report and the verdict.
passed=$(grep -Eo '[0-9]+ passed' .cache/pytest.log | tail -1 | grep -Eo '[0-9]+' || echo 0)
failed=$(grep -Eo '[0-9]+ failed' .cache/pytest.log | tail -1 | grep -Eo '[0-9]+' || echo 0)
echo "tests: ${passed} passed, ${failed} failed"
exit "$pytest_rc"
