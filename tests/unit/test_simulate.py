"""bench/simulate's figures on small networks in memory: consistent with each other and the layout."""

from __future__ import annotations

import importlib
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES = 30
MESSAGES = 4


@pytest.fixture(scope="module")
def benchlib() -> ModuleType:
    """The bench's package, imported from bench/ as bench/simulate runs it."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("benchlib")
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.fixture(scope="module")
def simulate(benchlib: ModuleType) -> ModuleType:
    return importlib.import_module("benchlib.simulate")


@pytest.fixture(scope="module")
def sim_network(benchlib: ModuleType) -> ModuleType:
    return importlib.import_module("benchlib.sim_network")


@pytest.fixture(scope="module")
def runs(simulate: ModuleType, sim_network: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One small run of each topology, seeded."""
    plugin_dir = sim_network.write_plugin(tmp_path_factory.mktemp("simulate-plugins"))
    return {
        topology: simulate.simulate(topology, NODES, MESSAGES, seed=7, plugin_dir=plugin_dir)
        for topology in sim_network.TOPOLOGIES
    }


@pytest.mark.parametrize("topology", ["tree", "mesh"])
def test_every_satellite_gets_every_message_once(runs, topology):
    """Each message reaches every satellite but its sender once, the one after the heal too; no failure."""
    run = runs[topology]
    assert run.failures == []
    assert len(run.messages) == MESSAGES
    assert all(message.exactly_once for message in [*run.messages, run.after_heal])


@pytest.mark.parametrize("topology", ["tree", "mesh"])
def test_transmissions_are_one_per_node_plus_the_duplicates(runs, topology):
    """Every node but the sender gets a message first once: transmissions = nodes - 1 + duplicate arrivals."""
    run = runs[topology]
    assert run.nodes == NODES == run.relays + run.satellites
    for message in [*run.messages, run.after_heal]:
        assert message.transmissions >= run.nodes - 1
        assert message.transmissions == run.nodes - 1 + message.duplicates
        assert 1 <= message.rounds_to_deliver <= message.rounds_to_quiet


def test_a_tree_carries_each_message_once_over_each_link(runs):
    """In a tree there is one path to each node: nodes - 1 transmissions, no duplicate."""
    run = runs["tree"]
    assert run.links == run.nodes - 1
    assert {(message.transmissions, message.duplicates) for message in run.messages} == {(run.nodes - 1, 0)}


@pytest.mark.parametrize("topology", ["tree", "mesh"])
def test_each_node_knows_every_other_and_the_messages_it_saw(runs, topology):
    """After the build every directory lists every other node; every node has seen every message's id."""
    run = runs[topology]
    assert run.whole_after_build
    memory = run.memory
    assert memory.directory_entries == memory.directory_entries_min == run.nodes - 1
    assert memory.seen_ids == MESSAGES and memory.sampled == run.nodes
    assert 0 < memory.seen_bytes <= memory.seen_bytes_max < memory.seen_bytes_full
    assert 0 < memory.directory_bytes <= memory.directory_bytes_max
    assert run.build_bytes > 0 and run.interval_bytes > 0


@pytest.mark.parametrize("topology", ["tree", "mesh"])
def test_a_partition_is_forgotten_then_healed(runs, topology):
    """Three announce intervals apart, each side forgets the other; linked again, every directory is whole."""
    cut = runs[topology].partition
    assert sum(cut.sides) == NODES and min(cut.sides) > 0 and cut.links_cut >= 1
    assert cut.strangers_while_cut == 0
    assert cut.entries_while_cut < NODES - 1
    assert cut.healed and cut.heal_rounds >= 1 and cut.heal_bytes > 0


def _connected(nodes: set[str], links) -> bool:
    """Whether ``links`` join ``nodes`` into one piece (links to other nodes left out)."""
    reached, todo = set(), [min(nodes)]
    while todo:
        node = todo.pop()
        if node not in reached:
            reached.add(node)
            todo += [b if a == node else a for a, b in links if node in (a, b) and {a, b} <= nodes]
    return reached == nodes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_layouts_are_drawn_from_the_seed(sim_network, seed):
    """The same seed draws the same network: connected, and the cut leaves two connected sides."""
    for topology in sim_network.TOPOLOGIES:
        first = sim_network.layout(topology, 100, random.Random(seed))
        assert first == sim_network.layout(topology, 100, random.Random(seed))
        assert len(first.nodes) == 100 and len(first.relays) == 10
        nodes = set(first.nodes)
        assert _connected(nodes, first.links)
        assert _connected(set(first.side), first.links) and _connected(nodes - first.side, first.links)
        assert first.cut and all((a in first.side) != (b in first.side) for a, b in first.cut)


def test_the_tables_name_every_figure(simulate, runs):
    """Each network's table and the summary are Markdown tables with one row per figure."""
    run = runs["mesh"]
    table = simulate.table(run)
    assert table.startswith("| figure | value |")
    assert len(table.splitlines()) == 2 + len(simulate.rows(run))
    summary = simulate.summary(list(runs.values()))
    assert summary.splitlines()[0] == f"| figure | tree {NODES} | mesh {NODES} |"
