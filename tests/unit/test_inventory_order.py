"""The order of `all` against Ansible's own InventoryManager, on random nested inventories.

Ansible has no single order there: Group._walk_relationship visits each level of child
groups by iterating a `set` of Group objects, whose hash is their address, so from the
second level down the order changes between runs (`ansible all --list-hosts` on
tests/unit/data/nested-order.yml prints h6 before or after h0 h4 from one run to the next).
What can be required: our order is always one of those Ansible's walk can give, and equals
Ansible's wherever Ansible's is fixed (every inventory whose levels have at most one group
with children below it).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import yaml

from crashfleet.inventory import load_inventory

InventoryManager = pytest.importorskip("ansible.inventory.manager").InventoryManager
DataLoader = pytest.importorskip("ansible.parsing.dataloader").DataLoader
CASES = 1500


def random_inventory(rng: random.Random) -> dict[str, object]:
    """Up to 6 groups in a random DAG (children only among later groups), some under all:."""
    groups = [f"g{i}" for i in range(rng.randint(1, 6))]
    hosts = [f"h{i}" for i in range(rng.randint(1, 8))]

    def body(index: int) -> dict[str, object]:
        entry: dict[str, object] = {}
        members = rng.sample(hosts, rng.randint(0, min(3, len(hosts))))
        if members:
            entry["hosts"] = dict.fromkeys(members)
        kids = [k for k in groups[index + 1 :] if rng.random() < 0.4]
        if kids:
            entry["children"] = dict.fromkeys(kids)
        return entry

    under_all: dict[str, object] = {}
    top: dict[str, object] = {}
    for index, name in enumerate(groups):
        (under_all if rng.random() < 0.5 else top)[name] = body(index)
    root: dict[str, object] = {"children": under_all}
    if rng.random() < 0.3:
        root["hosts"] = dict.fromkeys(rng.sample(hosts, 1))
    return {"all": root, **top}


def ansible_orders(manager: object) -> set[tuple[str, ...]]:
    """Every host order of `all` that Ansible's walk can give, one per visiting order of the
    groups that have children, at each level (the set iteration Ansible leaves to chance)."""
    group = manager.groups["all"]  # type: ignore[attr-defined]
    results: set[tuple[str, ...]] = set()

    def walk(ordered: list[object], unprocessed: set[object], seen: set[object]) -> None:
        if not unprocessed:
            hosts = [h.name for g in ordered for h in g.hosts if not h.implicit]  # type: ignore[attr-defined]
            results.add(tuple(dict.fromkeys(hosts)))
            return
        seen = seen | unprocessed
        parents = [g for g in unprocessed if g.child_groups]  # type: ignore[attr-defined]
        for permutation in itertools.permutations(parents):
            following, added = set(), list(ordered)
            for parent in permutation:
                for child in parent.child_groups:  # type: ignore[attr-defined]
                    following.add(child)
                    if child not in seen:
                        added.append(child)
            walk(added, following - seen, seen)

    walk([group, *group.child_groups], {group, *group.child_groups}, set())
    return results


def test_all_is_in_an_order_ansible_gives(tmp_path: Path) -> None:
    fixed = 0
    for seed in range(CASES):
        path = tmp_path / f"inventory-{seed}.yml"
        path.write_text(yaml.safe_dump(random_inventory(random.Random(seed))))
        manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
        theirs = tuple(h.name for h in manager.get_hosts("all"))
        if not theirs:
            continue  # an inventory with no hosts: we say so (PatternError), Ansible lists nothing
        possible = ansible_orders(manager)
        assert theirs in possible, f"seed {seed}: the model of Ansible's walk is wrong"
        ours = tuple(h.name for h in load_inventory(path).match("all"))
        assert ours in possible, f"seed {seed}: {ours} is no order Ansible gives; it gives {sorted(possible)}"
        if len(possible) == 1:
            fixed += 1
            assert ours == theirs
    assert fixed > CASES * 0.8  # the exact check ran on most cases


def test_nested_levels_follow_the_order_groups_were_reached(tmp_path: Path) -> None:
    """Where Ansible leaves it to chance, we take the order the inventory names the groups in."""
    path = Path(__file__).parent / "data" / "nested-order.yml"
    assert [h.name for h in load_inventory(path).match("all")] == ["h1", "h2", "h6", "h0", "h4"]
    assert [h.name for h in load_inventory(path).match("all[2]")] == ["h6"]
