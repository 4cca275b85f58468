"""The monitoring schedule of each model (the seed checked for drift once a day, at 06:00 UTC;
a `TabularModel` component sets its own with `monitoring_schedule`)."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from mlassets.catalog import Model


def daily_monitoring(m: Model, monitoring_job) -> ScheduleDefinition:
    """Materialize model `m`'s recent_data and drift_report on its schedule (cron, UTC)."""
    cron = m.settings.schedule
    return ScheduleDefinition(
        name=m.job("daily_monitoring"),
        job=monitoring_job,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Materialize {m.name}'s recent_data and drift_report on `{cron}` (UTC).",
    )
