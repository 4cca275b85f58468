"""One asset function as one model's asset: the factory every group's `build(m)` uses."""

from collections.abc import Callable, Iterable

from dagster import AssetIn, AssetsDefinition, asset

from mlassets.catalog import Model


def model_asset(
    m: Model,
    fn: Callable,
    group: str,
    kinds: set[str],
    ins: Iterable[str] = (),
    logs_to_mlflow: bool = False,
    **kwargs,
) -> AssetsDefinition:
    """`fn` as model `m`'s asset of the same name: under its key prefix and in its group, tagged
    with the model (steps find it with `model_of`), each input in `ins` this model's asset of
    that name (an unprefixed name would be ambiguous among models). A step that logs to MLflow
    takes its resources from the context: `mlflow` (which finds this model's run), `dataset`
    and `registry`."""
    if logs_to_mlflow:
        kwargs["required_resource_keys"] = {"mlflow", "dataset", "registry"}
    if m.settings.owners:  # a component's `owners` and `tags`, shown in the Catalog
        kwargs["owners"] = list(m.settings.owners)
    if m.settings.tags:
        kwargs["tags"] = {**kwargs.get("tags", {}), **m.settings.tags}
    return asset(
        name=fn.__name__,
        key_prefix=m.prefix,
        group_name=m.group(group),
        kinds=kinds,
        op_tags=m.tags,
        ins={name: AssetIn(m.key(name)) for name in ins},
        **kwargs,
    )(fn)
