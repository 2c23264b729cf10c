"""The `instance` resource of py-raises (componentize-py looks it up in a
module named after the interface)."""

from componentize_py_types import Err
from wit_world.exports import resource_type
from wit_world.imports import types


class Instance(resource_type.Instance):
    def __init__(self):
        self.calls = 0

    @classmethod
    def open(cls, name, properties):
        return cls()

    def online(self):
        pass

    def offline(self):
        pass

    def terminate(self):
        pass

    def looks_alive(self):
        return types.Health_Healthy()

    def is_alive(self):
        return types.Health_Healthy()

    def control(self, code, payload):
        self.calls += 1
        if code == "raise":
            raise RuntimeError(f"raised on purpose: {payload}")
        if code == "echo":
            return payload
        if code == "calls":
            return str(self.calls)
        raise Err(f'unknown control code "{code}"; known: raise, echo, calls')
