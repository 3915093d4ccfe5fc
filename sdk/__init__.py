"""juggler.sdk: write a framework (scheduler) in Python.

    fw = Framework("127.0.0.1:5050", FrameworkInfo(name="mine"))
    await fw.subscribe()
    async for event in fw.events(): ...
"""

from juggler.sdk.framework import Framework, FrameworkError

__all__ = ["Framework", "FrameworkError"]
