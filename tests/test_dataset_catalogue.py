"""The table of built-in datasets (kgan_core.data.catalogue) says what their loaders give."""

from __future__ import annotations

import pytest

from kgan_core.data import BUILTIN_DATASETS, DEFAULT_ROOT, LOADERS, load_dataset
from kgan_core.data.builtin import available_offline
from kgan_core.data.catalogue import BUILTIN_NAMES, BUILTINS, builtin_root


def test_the_table_names_every_loader_and_nothing_else():
    assert set(LOADERS) == set(BUILTIN_NAMES) and BUILTIN_DATASETS == BUILTIN_NAMES


@pytest.mark.parametrize("name", [n for n in BUILTIN_NAMES if available_offline(n, DEFAULT_ROOT)])
def test_a_builtin_loads_as_the_table_says(name):
    facts = BUILTINS[name]
    data = load_dataset(name, limit=16, n_points=16)
    assert (data.kind, tuple(data.item_shape)) == (facts.kind, facts.item_shape)


def test_builtins_that_need_no_files_load_offline(tmp_path):
    for facts in BUILTINS.values():
        if facts.files is None:
            assert available_offline(facts.name, tmp_path), facts.name


def test_the_configured_root_wins_over_the_default(tmp_path):
    assert builtin_root(tmp_path) == tmp_path and builtin_root(None) == DEFAULT_ROOT
