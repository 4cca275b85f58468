"""One MLflow run per key (a Dagster run and a model), however many steps look for it at once.

MLflow has no compare-and-set for runs: two steps that search, find nothing and create would log
to two runs. So a creator waits `SETTLE_S` and searches again; every creator and every later
finder then sees the same runs and keeps the oldest (start time, then run id: the order MLflow's
SQL stores use), and a creator that did not win deletes its own. Sound while a creator's search
and create are less than `SETTLE_S` apart (as the lease's are, `mlassets.ml.lease`).
"""

import time

from mlassets.ml.lease import SETTLE_S


def find_or_create_run(
    client, experiment: str, key: dict[str, str], name: str, tags: dict[str, str]
) -> str:
    """The run of `experiment` tagged with every item of `key`, else a new one named `name`
    with `tags` and `key`, once every step that created one at the same time agrees on it."""
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in key.items())

    def oldest() -> str | None:
        runs = client.search_runs([experiment], where, order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    found = oldest()
    if found is not None:
        return found
    mine = client.create_run(experiment, run_name=name, tags={**tags, **key}).info.run_id
    time.sleep(SETTLE_S)
    first = oldest()
    if first != mine:
        client.delete_run(mine)
    return first
