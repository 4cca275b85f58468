"""The monitoring caches (`ml.monitoring.PerModel`): one value per model, however many models'
sensors tick in one process; a new version replaces its model's value."""

import threading

import pytest

from mlassets.ml.monitoring import PerModel

pytestmark = pytest.mark.unit


def test_five_models_ticking_in_turn_build_each_value_once():
    cache, built = PerModel(), []

    def build(model: str):
        built.append(model)
        return f"value of {model}"

    for _ in range(3):  # three ticks of five sensors (an lru_cache of 4 rebuilt all 15)
        for model in "abcde":
            assert cache.get(("store", model), "1", lambda m=model: build(m)) == f"value of {model}"
    assert built == list("abcde")


def test_a_new_version_replaces_its_models_value_only():
    cache = PerModel()
    cache.get(("store", "a"), "1", lambda: "a1")
    cache.get(("store", "b"), "1", lambda: "b1")
    assert cache.get(("store", "a"), "2", lambda: "a2") == "a2"
    assert cache.get(("store", "a"), "2", lambda: pytest.fail("rebuilt")) == "a2"
    assert cache.get(("store", "b"), "1", lambda: pytest.fail("rebuilt")) == "b1"
    # the same name in another store is another model
    assert cache.get(("other", "a"), "2", lambda: "other a2") == "other a2"


def test_threads_reading_one_model_all_get_its_value():
    cache, answers = PerModel(), []
    threads = [
        threading.Thread(target=lambda: answers.append(cache.get(("s", "m"), "1", lambda: "v")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert answers == ["v"] * 8
