"""juggler: a Mesos-style cluster manager.

The code lives in top-level folders of the repository, each mapped to one
subpackage of this namespace by pyproject.toml (master/ → juggler.master, ...).
"""

__version__ = "0.1.0"
