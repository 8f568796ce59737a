#!/usr/bin/env bash
# Builds the Python virtualenvs with Apache Airflow (PyPI) and the airflow-mesos provider
# (examples/airflow, `pip install`ed like an operator does, not editable) for the provider's unit
# tests and for tests/airflow_e2e.rs:
#   * Airflow 3 (default /opt/am-airflow-venv, 3.1.8) with pytest;
#   * Airflow 2.10 (default /opt/am-airflow2-venv, 2.10.5).
# Airflow's constraints files live on GitHub; they are used when reachable, otherwise the Airflow
# version is pinned here and pip resolves the rest.
# Idempotent: a venv that already has the pinned Airflow is kept; the provider is reinstalled from
# this checkout each time (no network: no dependencies, no build isolation).
# Writes AM_TEST_AIRFLOW_VENV and AM_TEST_AIRFLOW2_VENV to .ci/test-env-airflow.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"
venv3="${AM_AIRFLOW_VENV:-/opt/am-airflow-venv}"
version3="${AM_AIRFLOW_VERSION:-3.1.8}"
venv2="${AM_AIRFLOW2_VENV:-/opt/am-airflow2-venv}"
version2="${AM_AIRFLOW2_VERSION:-2.10.5}"

log() { echo "setup-airflow: $*" >&2; }

# make_venv <venv> <airflow version> [extra packages...]
make_venv() {
    local venv="$1" version="$2"
    shift 2
    local py="${venv}/bin/python"
    local pip=("${py}" -m pip install --quiet --disable-pip-version-check)
    if [ -x "${py}" ] && [ "$("${py}" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))' 2>/dev/null)" = "${version}" ]; then
        log "${venv} already has apache-airflow ${version}"
        return
    fi
    log "making ${venv} with apache-airflow ${version} (several minutes)"
    python3 -m venv "${venv}"
    "${pip[@]}" --upgrade pip setuptools wheel
    local pyver constraints=()
    pyver="$("${py}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    local url="https://raw.githubusercontent.com/apache/airflow/constraints-${version}/constraints-${pyver}.txt"
    local cfile="${venv}/airflow-constraints.txt"
    if curl -fsS --max-time 20 -o "${cfile}" "${url}" 2>/dev/null; then
        log "using ${url}"
        constraints=(-c "${cfile}")
    else
        log "the constraints file ${url} is not reachable; pip resolves the dependencies"
    fi
    "${pip[@]}" "${constraints[@]}" "apache-airflow==${version}" "$@"
}

# install_provider <venv>: `pip install` of examples/airflow, built from a copy of its sources so
# that the build leaves nothing in the checkout.
install_provider() {
    local py="$1/bin/python" src
    src="$(mktemp -d)"
    cp -r "${repo}/examples/airflow/pyproject.toml" "${repo}/examples/airflow/README.md" \
        "${repo}/examples/airflow/airflow_mesos_executor" "${src}/"
    # The package's former name (an editable install of it would shadow this one).
    "${py}" -m pip uninstall --quiet --yes airflow-mesos-executor >/dev/null 2>&1 || true
    "${py}" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
        --force-reinstall "${src}"
    rm -rf "${src}"
    "${py}" -c 'import importlib.metadata as m, airflow, airflow_mesos_executor as p; print("setup-airflow:", m.distribution("airflow-mesos-provider").version, "airflow", airflow.__version__, p.__file__)'
}

make_venv "${venv3}" "${version3}" pytest
"${venv3}/bin/python" -c 'import pytest' 2>/dev/null || "${venv3}/bin/python" -m pip install --quiet pytest
install_provider "${venv3}"
make_venv "${venv2}" "${version2}"
install_provider "${venv2}"

cat >"${here}/test-env-airflow.sh" <<EOF
export AM_TEST_AIRFLOW_VENV=${venv3}
export AM_TEST_AIRFLOW2_VENV=${venv2}
EOF
cat "${here}/test-env-airflow.sh"
