"""The module componentize-py looks the exported `instance` resource up in
(it is named after the interface `resource-type`): the SDK's Instance."""

from warden_sdk.export import Instance  # noqa: F401
