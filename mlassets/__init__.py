"""mlassets: a Dagster code location that governs tabular ML models with MLflow.

`mlassets.TabularModel` is the Component a `defs.yaml` names (`type: mlassets.TabularModel`);
it is imported on first use, so `import mlassets` stays light.
"""

__all__ = ["TabularModel"]


def __getattr__(name: str):
    if name == "TabularModel":
        from mlassets.component import TabularModel

        return TabularModel
    raise AttributeError(f"module 'mlassets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
