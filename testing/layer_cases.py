"""Generated layer stacks for the differential test against `umoci unpack`
(tests/integration/test_layers_vs_umoci.py), and the rules that keep them to
what the OCI image-spec defines.

`layer_stacks()` is a Hypothesis strategy: 1–3 layers of 1–7 entries (files,
directories, symlinks, hard links, FIFOs, whiteouts, opaque markers; modes
with setuid/setgid/sticky; a few owners and mtimes) over a small set of
names, so that paths collide: the same path twice in one layer, a directory
replaced by a file and back, a symlink replaced by a directory, a whiteout
before or after its sibling entries or of an entry of the same layer, a
directory entry after its children, a hard link to a file a later layer
whites out. Each layer is a list in tar order.

`Sequential` replays a stack as a sequential extractor (umoci) sees it, entry
by entry, and says of each entry whether it is in scope. `repair` drops the
entries the spec leaves undefined, so that every generated case has one
right answer (see the README's differences table):

- an entry (or the target of a hard link) beneath a path that is a symlink
  at that point: umoci resolves the path through the link (inside the root
  filesystem), juggler's layers cannot see a lower layer's link and refuse
  one of the same layer; the spec says nothing of paths through symlinks.

And it drops the entries both refuse, or that the harness's example tests
cover one by one, so that the generated cases are compared, not refused:

- a hard link to anything but a non-directory an earlier entry of the same
  layer made (umoci fails where there is no such file; links to a lower
  layer's file, which juggler refuses: "Extracting a layer with hardlink
  references to files outside of the layer may fail", layer.md);
- an entry beneath a path that is not a directory at that point (umoci
  fails; juggler refuses one of the same layer, and makes a directory over
  a lower layer's file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from juggler.testing.oci_layout import Entry

NAMES = ("a", "b", "c")
MODES = (0o644, 0o755, 0o700, 0o600, 0o555, 0o4755, 0o2755, 0o1777, 0o6711, 0o2775)
OWNERS = (0, 1, 1000, 65534)
MTIMES = (1_000_000_000, 1_234_567_890, 1_600_000_000)
DATA = (b"", b"x", b"hello\n")
SYMLINK_TARGETS = ("a", "../b", "/c", "nowhere", "a/b", ".")
MARKERS = ("whiteout", "opaque")
XATTRS = ((), (("user.a", "1"),), (("user.a", "2"), ("user.b", "")),
          (("trusted.overlay.opaque", "y"),))  # the last: overlayfs's own, never applied


def _ancestors(path: str) -> list[str]:
    """Proper ancestors of a path, outermost first, without the root."""
    parts = path.split("/") if path else []
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/") if top else True


@dataclass
class Sequential:
    """The tree a sequential extractor builds (path → "dir" | "file" |
    "symlink" | "fifo"), with umoci's rule for whiteouts: a whiteout (or an
    opaque marker) removes only what the current layer did not make
    (`upper`: the layer's paths and their parents)."""

    tree: dict[str, str] = field(default_factory=lambda: {"": "dir"})
    upper: set[str] = field(default_factory=set)
    explicit: dict[str, Entry] = field(default_factory=dict)  # dir → the entry it has
    # Directories no entry made, that mkdir(2) made set-group-ID (in a
    # set-group-ID parent, as that parent was then) → the group they took.
    setgid: dict[str, int] = field(default_factory=dict)
    # Directories a whiteout or opaque marker should have deleted (the spec
    # applies them first, whatever the order) but that a sequential extractor
    # kept, with their old attributes, because the layer had already made
    # something beneath them.
    stale: set[str] = field(default_factory=set)
    layer_dirs: set[str] = field(default_factory=set)  # directories this layer's entries made

    def _delete(self, p: str) -> None:
        del self.tree[p]
        self.explicit.pop(p, None)
        self.setgid.pop(p, None)
        self.stale.discard(p)

    def _sgid(self, p: str) -> int | None:
        """The group a directory made in `p` takes if `p` is set-group-ID."""
        if p in self.explicit:
            e = self.explicit[p]
            return e.gid if e.mode & 0o2000 else None
        return self.setgid.get(p)

    def _mkdir(self, q: str) -> None:
        gid = self._sgid(q.rpartition("/")[0])
        if gid is not None:
            self.setgid[q] = gid
        self.tree[q] = "dir"

    def next_layer(self) -> None:
        self.upper = set()
        self.layer_dirs = set()

    def _drop(self, top: str, keep_top: bool = False) -> None:
        # `upper` holds the parents of what the layer made: a path not in it
        # has nothing of this layer beneath it.
        for p in [p for p in self.tree if _under(p, top) and p not in self.upper]:
            if not (keep_top and p == top):
                self._delete(p)
        for p in [p for p in self.tree if _under(p, top) and p not in self.layer_dirs]:
            if not (keep_top and p == top) and self.tree[p] == "dir":
                self.stale.add(p)
                gid = self._sgid(p)  # it keeps its old mode, set-group-ID or not
                self.explicit.pop(p, None)
                self.setgid.pop(p, None)
                if gid is not None:
                    self.setgid[p] = gid

    def check(self, e: Entry) -> str:
        """"" if `e` is in scope here, else why not: "through-symlink"."""
        paths = [e.path] + ([e.link] if e.kind == "hardlink" else [])
        for p in paths:
            if any(self.tree.get(q) == "symlink" for q in _ancestors(p)):
                return "through-symlink"
        if e.kind == "opaque" and self.tree.get(e.path) == "symlink":
            return "through-symlink"
        return ""

    def apply(self, e: Entry) -> str:
        """Apply `e`; returns "" or why a sequential extractor fails on it:
        "under-non-directory" (a parent is not a directory), "bad-hardlink"
        (no such non-directory to link to)."""
        if e.kind in MARKERS:
            top = e.path
            if top in self.tree and (e.kind == "whiteout" or self.tree[top] == "dir"):
                self._drop(top, keep_top=e.kind == "opaque")
            return ""
        if any(self.tree.get(q, "dir") != "dir" for q in _ancestors(e.path)):
            return "under-non-directory"
        kind = e.kind
        if e.kind == "hardlink":
            kind = self.tree.get(e.link, "dir")
            if kind == "dir" or e.link == e.path:
                return "bad-hardlink"
        for q in _ancestors(e.path):
            if q not in self.tree:
                self._mkdir(q)
        if not (kind == "dir" and self.tree.get(e.path) == "dir"):
            for p in [p for p in self.tree if _under(p, e.path)]:
                self._delete(p)
        self.tree[e.path] = kind
        if e.kind == "dir":
            self.explicit[e.path] = e
            self.setgid.pop(e.path, None)
            self.stale.discard(e.path)
            self.layer_dirs.add(e.path)
        self.upper.update([e.path, *_ancestors(e.path), ""])
        return ""


    def same_layer_link(self, e: Entry, earlier: list[Entry]) -> bool:
        """Whether hard link `e` names a non-directory an entry of `earlier`
        (the layer's entries before it) made, still there."""
        return e.link != e.path and self.tree.get(e.link, "dir") != "dir" and \
            e.link in self.upper and any(x.path == e.link for x in earlier)


def repair(layers: list[list[Entry]]) -> list[list[Entry]]:
    """`layers` without the entries the module docstring lists, judged in tar
    order as a sequential extractor meets them."""
    seq = Sequential()
    out: list[list[Entry]] = []
    for layer in layers:
        seq.next_layer()
        kept: list[Entry] = []
        for e in layer:
            if seq.check(e) or (e.kind == "hardlink" and not seq.same_layer_link(e, kept)):
                continue
            if seq.apply(e):
                continue  # it changed nothing: a sequential extractor stops before
            kept.append(e)
        out.append(kept)
    return out


def replay(layers: list[list[Entry]]) -> tuple[Sequential, list[tuple[int, Entry, str]]]:
    """The stack applied by a sequential extractor, and the entries it fails
    on: (layer index, entry, why)."""
    seq = Sequential()
    out = []
    for i, layer in enumerate(layers):
        seq.next_layer()
        for e in layer:
            why = seq.apply(e)
            if why:
                out.append((i, e, why))
    return seq, out


_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)


@st.composite
def _layer(draw: st.DrawFn) -> list[Entry]:
    entries: list[Entry] = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(
            ("file", "file", "dir", "dir", "symlink", "hardlink", "fifo", "whiteout",
             "whiteout", "opaque", "root")))
        attrs = {"mode": draw(st.sampled_from(MODES)), "uid": draw(st.sampled_from(OWNERS)),
                 "gid": draw(st.sampled_from(OWNERS)), "mtime": draw(st.sampled_from(MTIMES))}
        xattrs = draw(st.sampled_from(XATTRS))
        if kind == "root":
            entries.append(Entry("", "dir", xattrs=xattrs, **attrs))
            continue
        path = draw(_paths)
        if kind == "file":
            entries.append(Entry(path, "file", data=draw(st.sampled_from(DATA)),
                                 xattrs=xattrs[:1] if xattrs[:1] != XATTRS[-1] else (),
                                 **attrs))
        elif kind == "dir":
            entries.append(Entry(path, kind, xattrs=xattrs, **attrs))
        elif kind == "fifo":
            entries.append(Entry(path, kind, **attrs))
        elif kind == "symlink":
            entries.append(Entry(path, "symlink", link=draw(st.sampled_from(SYMLINK_TARGETS)),
                                 uid=attrs["uid"], gid=attrs["gid"], mtime=attrs["mtime"]))
        elif kind == "hardlink":
            made = [e.path for e in entries if e.kind in ("file", "fifo", "symlink")]
            if made and draw(st.integers(0, 3)):
                target = draw(st.sampled_from(made))  # mostly to a file of this layer
            else:
                target = draw(_paths)
            entries.append(Entry(path, "hardlink", link=target))
        elif kind == "whiteout":
            entries.append(Entry(path, "whiteout"))
        else:
            entries.append(Entry(draw(st.sampled_from(("", *NAMES))), "opaque"))
    return entries


@st.composite
def layer_stacks(draw: st.DrawFn) -> list[list[Entry]]:
    """1–3 layers (bottom first, mostly more than one), each a list of
    entries in tar order."""
    return [draw(_layer()) for _ in range(draw(st.sampled_from((1, 2, 2, 3, 3, 3))))]
