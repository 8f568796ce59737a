"""Airflow executor for airflow-mesos: ``[core] executor = airflow_mesos_executor.AirflowMesosExecutor``.

The executor class is imported lazily so that the HTTP client and the spec builder can be used
(and tested) without Airflow installed.
"""

__version__ = "0.1.0"
__all__ = ["AirflowMesosExecutor", "__version__"]


def __getattr__(name):
    if name == "AirflowMesosExecutor":
        from airflow_mesos_executor.executor import AirflowMesosExecutor

        return AirflowMesosExecutor
    raise AttributeError(f"module 'airflow_mesos_executor' has no attribute {name!r}")
