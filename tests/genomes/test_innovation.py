"""InnovationTracker: equal structural changes get equal numbers."""

from __future__ import annotations

import json

import pytest

from genomes import GenomeError, InnovationTracker


def test_input_and_output_are_zero_and_one_and_fresh_ids_start_after():
    t = InnovationTracker()
    assert (t.INPUT, t.OUTPUT) == (0, 1)
    assert t.fresh() == 2 and t.fresh() == 3


def test_an_edge_keeps_its_number_for_the_whole_run():
    t = InnovationTracker()
    first = t.edge(0, 1)
    t.next_generation()
    assert t.edge(0, 1) == first
    assert t.edge(1, 0) != first


def test_a_split_gets_one_id_per_generation():
    t = InnovationTracker()
    k = t.split_node(0, 1)
    assert t.split_node(0, 1) == k and t.split_node(0, 2) != k
    t.next_generation()
    assert t.generation == 1
    assert t.split_node(0, 1) not in {k, t.edge(0, 1)}


def test_named_nodes_and_edges_share_one_counter_without_collisions():
    t = InnovationTracker()
    ids = [t.named_node("a"), t.edge(0, 1), t.split_node(0, 1), t.named_node("b"), t.edge(2, 3)]
    assert len(set(ids)) == len(ids)
    assert t.named_node("a") == ids[0]


def test_round_trip_through_json_keeps_every_assignment():
    t = InnovationTracker()
    t.edge(0, 1), t.split_node(0, 1), t.named_node("h"), t.next_generation(), t.split_node(2, 1)
    back = InnovationTracker.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t
    assert back.edge(0, 1) == t.edge(0, 1) and back.fresh() == t.fresh()


@pytest.mark.parametrize("data", [
    None,
    {},
    {"next_id": 2, "generation": 0, "edges": [], "splits": []},
    {"next_id": "two", "generation": 0, "edges": [], "splits": [], "named": {}},
    {"next_id": 2, "generation": 0, "edges": [[0, 1]], "splits": [], "named": {}},
    {"next_id": 2, "generation": 0, "edges": 5, "splits": [], "named": {}},
    {"next_id": 2, "generation": 0, "edges": [], "splits": [], "named": []},
    {"next_id": 1e400, "generation": 0, "edges": [], "splits": [], "named": {}},
    {"next_id": True, "generation": 0, "edges": [], "splits": [], "named": {}},
    {"next_id": -4, "generation": 0, "edges": [], "splits": [], "named": {}},
    {"next_id": 3, "generation": 0.5, "edges": [], "splits": [], "named": {}},
    {"next_id": 3, "generation": 0, "edges": [[0, 1, 7]], "splits": [], "named": {}},
    {"next_id": 3, "generation": 0, "edges": [[0, 1, 2], [0, 1, 2]], "splits": [], "named": {}},
    {"next_id": 3, "generation": 0, "edges": [["0", 1, 2]], "splits": [], "named": {}},
    {"next_id": 3, "generation": 0, "edges": [], "splits": [[0, 1, None]], "named": {}},
    {"next_id": 3, "generation": 0, "edges": [], "splits": [], "named": {"h": 9}},
    {"next_id": 3, "generation": 0, "edges": [], "splits": [], "named": {"h": [2]}},
    [["next_id", 3]],
])  # fmt: skip
def test_malformed_tracker_data_raises_genome_error(data):
    with pytest.raises(GenomeError, match="innovation tracker") as err:
        InnovationTracker.from_dict(data)
    assert "\n" not in str(err.value)


def test_an_id_not_below_next_id_is_refused_since_it_would_be_handed_out_twice():
    data = {"next_id": 3, "generation": 0, "edges": [[0, 1, 3]], "splits": [], "named": {}}
    with pytest.raises(GenomeError, match=r"tracker.edges\[0\]: should be an id in \[0, next_id = 3\)"):
        InnovationTracker.from_dict(data)
