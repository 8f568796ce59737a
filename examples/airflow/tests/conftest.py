"""pytest set-up: an isolated AIRFLOW_HOME (so importing Airflow never touches ~/airflow) and the fake daemon."""

import atexit
import os
import shutil
import sys
import tempfile

_home = tempfile.mkdtemp(prefix="am-shim-test-")
atexit.register(shutil.rmtree, _home, True)
os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "false")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_home}/airflow.db")
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "unit-test-jwt-signing-key")
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402

from fake_daemon import FakeDaemon  # noqa: E402


@pytest.fixture
def daemon():
    d = FakeDaemon(token="tok-unit-test-7f3a").start()
    yield d
    d.stop()
