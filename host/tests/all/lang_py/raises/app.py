"""py-raises: a Python type on the raw bindings (no SDK) whose `control`
lets an exception escape, for host/tests/all/lang_py.rs: the agent must
report the exception's message and run the next call on a fresh sandbox.

Control codes: `raise` (RuntimeError naming the payload, uncaught),
`echo` (the payload back), `calls` (how many calls this instance has
answered, so a fresh one is seen)."""

from wit_world import exports
from wit_world.imports import types


class ResourceType(exports.ResourceType):
    def describe(self):
        return types.TypeInfo(
            "py-raises",
            "0.1.0",
            "Raises in control on request (a test plugin).",
            [],
            types.Timing(10_000, 0, 1_000, 2_000),
            types.TypeFlags(0),
        )

    def validate(self, properties):
        return None
