"""Test tiers by marker: each test module declares its tier, and collection fails otherwise.

Every test module sets `pytestmark = pytest.mark.<tier>` (`unit`, `integration` or `e2e`; see
pyproject.toml's markers), alone or in a list beside other marks. A test (or class) that belongs
to another tier says so with its own `@pytest.mark.<tier>`, and the closest mark wins. No table of
module or test names exists, so renaming or adding a test never moves it between tiers silently:
a module without its tier, a test with two tiers at one level, or a `services` test outside `e2e`
stops the collection with every offender named.

`-m unit` selects by all the marks of a test's chain, the module's included, so a test that
overrides its module's tier would be selected by both. `apply` therefore moves each module's (and
class's) tier mark down onto the tests that keep it: afterwards every test carries exactly one
tier, its own.
"""

import pytest

TIERS = ("unit", "integration", "e2e")


def own_tiers(node: pytest.Item | pytest.Collector) -> list[str]:
    return [mark.name for mark in node.own_markers if mark.name in TIERS]


def tier_of(item: pytest.Item) -> str | None:
    """The closest tier mark of a test: its own, its class's, then its module's."""
    return next((mark.name for mark in item.iter_markers() if mark.name in TIERS), None)


def problems(items: list[pytest.Item]) -> list[str]:
    """What stops the collection: one line per offending module or test."""
    found: list[str] = []
    for module in dict.fromkeys(item.getparent(pytest.Module) for item in items):
        if module is not None and len(own_tiers(module)) != 1:
            tiers = own_tiers(module) or "none"
            found.append(
                f"{module.nodeid}: declares tiers {tiers}; give the module exactly one: "
                f"pytestmark = pytest.mark.<{'|'.join(TIERS)}>"
            )
    for item in items:
        chain = [node for node in item.listchain() if not isinstance(node, pytest.Module)]
        doubled = [node.nodeid for node in chain if len(own_tiers(node)) > 1]
        if doubled:
            found.append(f"{item.nodeid}: more than one tier on {doubled[0]}")
        elif item.get_closest_marker("services") and tier_of(item) != "e2e":
            found.append(f"{item.nodeid}: a `services` test is e2e, not {tier_of(item)}")
    return found


def apply(items: list[pytest.Item]) -> None:
    """Refuse untiered tests by name, then leave each test its one tier as its own mark."""
    found = problems(items)
    if found:
        shown = "\n  ".join(found[:20])
        more = f"\n  ... and {len(found) - 20} more" if len(found) > 20 else ""
        raise pytest.UsageError(f"tests without a tier (mlassets_tests/tiers.py):\n  {shown}{more}")
    parents = set()
    for item in items:
        tier = tier_of(item)
        if tier not in own_tiers(item):
            item.add_marker(tier)
        parents.update(node for node in item.listchain()[:-1] if own_tiers(node))
    for node in parents:
        node.own_markers[:] = [mark for mark in node.own_markers if mark.name not in TIERS]
