"""images/stack.py: the corrections an image's stack directory holds, decided
from what each layer has at each path (a fake probe: no filesystem)."""

from __future__ import annotations

from juggler.images.stack import (
    BELOW,
    INHERIT,
    NEW,
    Correction,
    Found,
    Layer,
    lowers,
    plan,
)

DIR, OPAQUE, WHITEOUT, OTHER = Found("dir"), Found("dir", True), Found("whiteout"), Found("other")


def stack(*layers: tuple[dict[str, Found], dict[str, str]]) -> tuple[list[Layer], object]:
    """Layers top first, each (path → Found, implicit); the root is a directory."""
    found = [{"": DIR, **paths} for paths, _ in layers]
    built = [Layer(f"/l{i}", implicit) for i, (_, implicit) in enumerate(layers)]
    return built, lambda k, path: found[k].get(path)


def test_an_implicit_directory_takes_the_attributes_of_the_one_below() -> None:
    layers, probe = stack(({"a": DIR, "a/f": OTHER}, {"": INHERIT, "a": INHERIT}),
                          ({"a": DIR}, {"": INHERIT}))
    assert plan(layers, probe) == [Correction("", "dir", 1), Correction("a", "dir", 1)]


def test_nothing_below_or_a_new_directory_needs_no_correction() -> None:
    layers, probe = stack(({"a": DIR, "b": OPAQUE}, {"a": INHERIT, "b": NEW}),
                          ({"b": DIR}, {}))
    assert plan(layers, probe) == [Correction("", "dir", 0)]


def test_a_directory_held_for_markers_shows_what_is_below() -> None:
    layers, probe = stack(
        ({"gone": DIR, "gone/x": WHITEOUT, "file": DIR, "file/x": WHITEOUT, "dir": DIR,
          "dir/x": WHITEOUT}, {"gone": BELOW, "file": BELOW, "dir": BELOW}),
        ({"file": OTHER, "dir": DIR}, {}))
    got = {c.path: c for c in plan(layers, probe)}
    assert got["gone"] == Correction("gone", "whiteout")
    assert got["file"] == Correction("file", "link", 1)
    assert got["dir"] == Correction("dir", "dir", 1)
    assert "gone/x" not in got and "file/x" not in got


def test_an_opaque_parent_or_a_whiteout_between_cuts_the_inheritance() -> None:
    layers, probe = stack(({"o": OPAQUE, "o/a": DIR}, {"o/a": INHERIT}),
                          ({"o": DIR, "o/a": DIR}, {}))
    assert Correction("o/a", "dir", 1) not in plan(layers, probe)
    layers, probe = stack(({"a": DIR}, {"a": INHERIT}), ({"a": WHITEOUT}, {}),
                          ({"a": DIR}, {}))
    assert [c.path for c in plan(layers, probe)] == [""]


def test_directories_holding_whiteouts_are_merged() -> None:
    layers, probe = stack(({"b": DIR, "b/x": WHITEOUT}, {}),)
    layers[0].whiteout_dirs.append("b")
    assert Correction("b", "dir", 0) in plan(layers, probe)


def test_the_layers_below_an_opaque_root_are_dropped() -> None:
    layers, probe = stack(({}, {}), ({"": OPAQUE}, {}), ({}, {}))
    assert [layer.dir for layer in lowers(layers, probe)] == ["/l0", "/l1"]
