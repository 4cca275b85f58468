"""A small, valid `EvaluationReport` for tests that judge what registration reads from one."""

from typing import Any

from mlassets.ml.records import EvaluationReport


def evaluation_report(
    *,
    gates: dict[str, bool],
    provenance: dict[str, Any] | None = None,
    estimation: dict[str, Any] | None = None,
    production: str | None = None,
) -> EvaluationReport:
    """`gates`: each verdict's name and whether it passed; the figures are placeholders."""
    return EvaluationReport.model_validate(
        {
            "metrics": {"f1": 0.8},
            "confusion_matrix": {"tn": 1, "fp": 0, "fn": 0, "tp": 1},
            "rows": 2,
            "positive_rate": 0.5,
            "gates": [
                {"name": n, "passed": p, "description": f"{n} {'passes' if p else 'FAILS'}"}
                for n, p in gates.items()
            ],
            "passed": all(gates.values()),
            "limits": {},
            "threshold": {"value": 0.5, "default": 0.5},
            "by_threshold": [],
            "champion_challenger": {
                "passed": gates.get("beats_production", True),
                "primary": "f1",
                "figures": {
                    "metric": "f1",
                    "candidate": 0.8,
                    "baseline": None,
                    "difference": None,
                    "tolerance": 0.0,
                    "required": None,
                },
                "message": "no production model yet",
                "interval": None,
                "production_version": production,
                "production": None,
                "error": None,
            },
            "fairness": {
                "passed": gates.get("fairness", True),
                "message": "no sensitive columns",
                "max_demographic_parity": None,
                "max_equalized_odds": 0.1,
                "min_group_size": 30,
                "offending_groups": {},
                "columns": [],
            },
            "importance": None,
            "calibration": None,
            "estimation": estimation,
            "provenance": provenance,
        }
    )
