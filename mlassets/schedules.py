"""The daily monitoring schedule (the seed checked for drift once a day)."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from mlassets.jobs import monitoring_job

daily_monitoring = ScheduleDefinition(
    name="daily_monitoring",
    job=monitoring_job,
    cron_schedule="0 6 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Materialize recent_data and drift_report every day at 06:00 (UTC).",
)
