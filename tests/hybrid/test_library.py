"""The module library on disk: round trip, atomic writes, tampering, names, errors."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import hybrid.library._store as store
from genomes.modules import ModuleEdge, ModuleNode, ModuleSpec
from hybrid.errors import HybridError
from hybrid.library import Library, LibraryError


def make_spec(name: str = "mlp", *, seed: int = 0, standardised: bool = True) -> ModuleSpec:
    """A two-node module: input(3) -> 1 (4, relu) -> 2 (2, tanh); edges 0->1, 0->2, 1->2."""
    rng = np.random.default_rng(seed)

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    nodes = (ModuleNode(1, 4, "relu", f32(4)), ModuleNode(2, 2, "tanh", f32(2)))
    edges = (ModuleEdge(0, 1, f32(4, 3)), ModuleEdge(0, 2, f32(2, 3)), ModuleEdge(1, 2, f32(2, 4)))
    mean = rng.standard_normal(3) if standardised else None
    scale = rng.uniform(0.5, 2.0, 3) if standardised else None
    return ModuleSpec(name, 3, nodes, edges, (1, 2), mean, scale)


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    return Library(tmp_path / "modules", create=True)


def _one_line(exc: pytest.ExceptionInfo[BaseException], *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


@pytest.mark.parametrize("standardised", [True, False])
def test_add_then_get_gives_identical_arrays_and_hash(lib: Library, standardised: bool) -> None:
    spec = make_spec(standardised=standardised)
    source = {"run_dir": "/runs/x", "genome_id": 7, "task": "circles", "gate": "sigmoid"}
    entry = lib.add(spec, description="first", source=source, metrics={"metric": "accuracy"})
    assert (entry.name, entry.hash) == ("mlp", spec.content_hash())
    assert (entry.in_width, entry.out_width, entry.n_parameters) == (3, 6, spec.n_parameters)
    back = lib.get("mlp")
    assert back.content_hash() == spec.content_hash()
    assert back.structure() == spec.structure()
    want, got = spec.arrays(), back.arrays()
    assert want.keys() == got.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key
    meta = json.loads((lib.path / "mlp" / "module.json").read_text())
    assert (meta["format"], meta["version"], meta["hash"]) == (
        "hybrid.module",
        1,
        spec.content_hash(),
    )
    assert meta["source"] == source and meta["structure"] == spec.structure()
    assert meta["created"].endswith("+00:00")
    assert lib.find(spec.content_hash()) == "mlp" and lib.find(spec.content_hash()[:10]) == "mlp"
    assert [e.name for e in lib.verify()] == ["mlp"]


def test_entries_are_sorted_and_remove_deletes_one(lib: Library) -> None:
    for name, seed in (("b", 1), ("a", 2), ("c.v2", 3)):
        lib.add(make_spec(name, seed=seed), description=name)
    assert [e.name for e in lib.entries()] == ["a", "b", "c.v2"]
    assert lib.entries()[0].description == "a"
    lib.remove("b")
    assert lib.names() == ["a", "c.v2"]
    with pytest.raises(LibraryError) as exc:
        lib.get("b")
    _one_line(exc, "no entry 'b'", "entries: a, c.v2")


def test_an_existing_name_is_refused_unless_overwrite(lib: Library) -> None:
    lib.add(make_spec(seed=1))
    with pytest.raises(LibraryError) as exc:
        lib.add(make_spec(seed=2))
    _one_line(exc, "entry 'mlp' exists", "--overwrite")
    new = make_spec(seed=2)
    assert lib.add(new, overwrite=True).hash == new.content_hash()
    assert lib.get("mlp").content_hash() == new.content_hash()
    assert sorted(os.listdir(lib.path)) == [".lock", "mlp"]


def test_an_interrupted_add_leaves_no_entry(lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    real = store._write_synced
    calls = []

    def fail_second(path: Path, data: bytes) -> None:
        calls.append(path.name)
        if len(calls) == 2:  # the weights are written, module.json is not
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(store, "_write_synced", fail_second)
    with pytest.raises(KeyboardInterrupt):
        lib.add(make_spec())
    assert calls == ["weights.safetensors", "module.json"]
    assert lib.names() == [] and lib.entries() == []
    assert [p for p in lib.path.iterdir() if p.name != ".lock"] == []


def test_an_interrupted_overwrite_keeps_the_old_entry(
    lib: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_spec(seed=1)
    lib.add(old)
    rename = os.rename

    def fail_into_place(src: Path, dst: Path) -> None:
        if (
            Path(src).name.startswith(".tmp-mlp-") and Path(dst) == lib.path / "mlp"
        ):  # the new entry
            raise OSError(28, "No space left on device")
        rename(src, dst)

    monkeypatch.setattr(store.os, "rename", fail_into_place)
    with pytest.raises(LibraryError) as exc:
        lib.add(make_spec(seed=2), overwrite=True)
    _one_line(exc, "cannot write 'mlp'", "No space left")
    monkeypatch.undo()
    assert lib.get("mlp").content_hash() == old.content_hash()
    assert lib.names() == ["mlp"]


def test_a_leftover_temporary_folder_is_ignored_then_cleared(lib: Library) -> None:
    (lib.path / ".tmp-mlp-abc").mkdir()
    (lib.path / ".tmp-mlp-abc" / "weights.safetensors").write_bytes(b"half")
    assert lib.names() == []
    lib.add(make_spec())
    assert sorted(os.listdir(lib.path)) == [".lock", "mlp"]


def test_an_overwrite_killed_between_its_renames_gets_the_old_entry_back(lib: Library) -> None:
    old = make_spec(seed=1)
    lib.add(old)
    aside = lib.path / ".tmp-mlp-old-x1"
    aside.mkdir()
    os.rename(lib.path / "mlp", aside / "mlp")  # where a kill after the first rename leaves it
    (lib.path / ".tmp-mlp-y2").mkdir()  # the new entry, never renamed in
    assert lib.names() == []
    lib.add(make_spec("other", seed=2))  # the next writer
    assert lib.names() == ["mlp", "other"]
    assert lib.get("mlp").content_hash() == old.content_hash()
    assert sorted(os.listdir(lib.path)) == [".lock", "mlp", "other"]


def test_two_writers_at_once_both_land(lib: Library) -> None:
    specs = [make_spec(f"m{k}", seed=k) for k in range(8)]
    errors: list[BaseException] = []

    def write(spec: ModuleSpec) -> None:
        try:
            Library(lib.path).add(spec)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [e.name for e in lib.verify()] == [f"m{k}" for k in range(8)]


def test_one_changed_float_in_the_weights_is_refused(lib: Library) -> None:
    spec = make_spec()
    lib.add(spec)
    path = lib.path / "mlp" / "weights.safetensors"
    arrays = load_file(path)
    arrays["edge.1.2.weight"][0, 0] += np.float32(1e-3)
    save_file(arrays, path)
    for call in (lambda: lib.get("mlp"), lambda: lib.verify(), lambda: lib.verify(["mlp"])):
        with pytest.raises(LibraryError) as exc:
            call()
        msg = _one_line(exc, "module library entry 'mlp'", str(lib.path / "mlp"))
        assert f"its files hash to {spec.content_hash()[:12]}" not in msg
        assert f"but module.json records {spec.content_hash()[:12]}…" in msg
        assert msg.endswith("the entry changed on disk; remove it and add it again")
    lib.remove("mlp")  # a broken entry can still be removed
    assert lib.names() == []


def test_one_changed_width_in_module_json_is_refused(lib: Library) -> None:
    lib.add(make_spec())
    path = lib.path / "mlp" / "module.json"
    meta = json.loads(path.read_text())
    meta["structure"]["nodes"][0]["width"] = 5
    path.write_text(json.dumps(meta))
    with pytest.raises(LibraryError) as exc:
        lib.get("mlp")
    _one_line(
        exc, "module library entry 'mlp'", "do not make a module", "the entry changed on disk"
    )
    meta["structure"]["nodes"][0]["width"] = 4
    meta["out_width"] = 7
    path.write_text(json.dumps(meta))
    with pytest.raises(LibraryError) as exc:
        lib.verify()
    _one_line(exc, "module library entry 'mlp'", "key 'out_width' is 7 but the module has 6")


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda m: m.pop("hash"), ("module.json: key 'hash' is missing",)),
        (lambda m: m.update(hash="abc"), ("key 'hash'", "'abc'")),
        (lambda m: m.update(format="other"), ("key 'format'",)),
        (lambda m: m["structure"].pop("outputs"), ("key 'structure.outputs' is missing",)),
        (lambda m: m.update(name="other"), ("key 'name' is 'other'", "'mlp'")),
    ],
)
def test_a_malformed_module_json_names_the_key(lib: Library, edit, needles) -> None:
    lib.add(make_spec())
    path = lib.path / "mlp" / "module.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(LibraryError) as exc:
        lib.get("mlp")
    _one_line(exc, str(path), *needles)


def test_missing_files_and_tensors_are_named(lib: Library) -> None:
    lib.add(make_spec())
    folder = lib.path / "mlp"
    arrays = load_file(folder / "weights.safetensors")
    del arrays["node.2.bias"]
    save_file(arrays, folder / "weights.safetensors")
    with pytest.raises(LibraryError) as exc:
        lib.get("mlp")
    _one_line(exc, "entry 'mlp'", "weights.safetensors has no tensor 'node.2.bias'")
    (folder / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LibraryError) as exc:
        lib.get("mlp")
    _one_line(exc, "weights.safetensors: not a safetensors file")
    (folder / "weights.safetensors").unlink()
    with pytest.raises(LibraryError) as exc:
        lib.get("mlp")
    _one_line(exc, "entry 'mlp'", "weights.safetensors is missing")
    (folder / "module.json").unlink()
    with pytest.raises(LibraryError) as exc:
        lib.entries()
    _one_line(exc, "entry 'mlp'", "module.json is missing")


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "a/b", "a b", "é", "../up"])
def test_bad_names_are_refused(lib: Library, name: str) -> None:
    with pytest.raises(LibraryError) as exc:
        lib.add(make_spec(name))
    _one_line(exc, f"module name {name!r}", "expected a letter or digit")
    with pytest.raises(LibraryError):
        lib.get(name)


@pytest.mark.parametrize("name", ["a", "A1", "mlp_v2.1-final", "9"])
def test_good_names_are_kept(lib: Library, name: str) -> None:
    assert lib.add(make_spec(name)).name == name and lib.get(name).name == name


def test_a_missing_library_and_a_bad_hash(tmp_path: Path, lib: Library) -> None:
    with pytest.raises(LibraryError) as exc:
        Library(tmp_path / "nope")
    msg = _one_line(
        exc, f"module library {tmp_path / 'nope'}: no such folder", "hybrid modules add"
    )
    assert "--library" in msg
    assert isinstance(exc.value, HybridError) and exc.value.exit_code == 2
    lib.add(make_spec())
    with pytest.raises(LibraryError) as exc:
        lib.find("xyz")
    _one_line(exc, "module hash 'xyz'", "hex")
    with pytest.raises(LibraryError) as exc:
        lib.find("0" * 64 if not make_spec().content_hash().startswith("0") else "1" * 64)
    _one_line(exc, "no module has hash")
