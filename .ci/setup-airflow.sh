#!/usr/bin/env bash
# Builds a Python virtualenv with Apache Airflow 3 (PyPI) and the airflow-mesos executor shim
# (examples/airflow, installed editable) plus pytest, for the shim's unit tests and for
# tests/airflow_e2e.rs. Airflow's constraints files live on GitHub, which is not reachable, so the
# Airflow version is pinned here and pip resolves the rest.
# Idempotent: a venv that already has the pinned Airflow is kept; the shim is (re)installed only
# when it does not import from this checkout.
# Writes AM_TEST_AIRFLOW_VENV=<venv> to .ci/test-env-airflow.sh (default venv: /opt/am-airflow-venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"
venv="${AM_AIRFLOW_VENV:-/opt/am-airflow-venv}"
airflow_version="${AM_AIRFLOW_VERSION:-3.1.8}"
py="${venv}/bin/python"
pip=("${py}" -m pip install --quiet --disable-pip-version-check)

log() { echo "setup-airflow: $*" >&2; }

have_airflow() {
    [ -x "${py}" ] && [ "$("${py}" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))' 2>/dev/null)" = "${airflow_version}" ]
}

if have_airflow; then
    log "${venv} already has apache-airflow ${airflow_version}"
else
    log "making ${venv} with apache-airflow ${airflow_version} (several minutes)"
    python3 -m venv "${venv}"
    "${pip[@]}" --upgrade pip setuptools wheel
    "${pip[@]}" "apache-airflow==${airflow_version}" pytest
fi

shim_dir="$("${py}" -c 'import os, airflow_mesos_executor as m; print(os.path.dirname(os.path.dirname(m.__file__)))' 2>/dev/null || true)"
if [ "${shim_dir}" != "${repo}/examples/airflow" ]; then
    log "installing the executor shim from ${repo}/examples/airflow (editable)"
    "${pip[@]}" --no-deps -e "${repo}/examples/airflow"
fi
"${py}" -c 'import pytest' 2>/dev/null || "${pip[@]}" pytest

"${py}" -c 'import airflow, airflow_mesos_executor; print("setup-airflow: airflow", airflow.__version__, "shim", airflow_mesos_executor.__file__)'
echo "export AM_TEST_AIRFLOW_VENV=${venv}" >"${here}/test-env-airflow.sh"
cat "${here}/test-env-airflow.sh"
