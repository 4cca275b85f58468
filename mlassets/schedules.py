"""The daily monitoring schedule of each model (the seed checked for drift once a day)."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from mlassets.catalog import Model


def daily_monitoring(m: Model, monitoring_job) -> ScheduleDefinition:
    """Materialize model `m`'s recent_data and drift_report every day at 06:00 (UTC)."""
    return ScheduleDefinition(
        name=m.job("daily_monitoring"),
        job=monitoring_job,
        cron_schedule="0 6 * * *",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Materialize {m.name}'s recent_data and drift_report every day at 06:00 "
        "(UTC).",
    )
