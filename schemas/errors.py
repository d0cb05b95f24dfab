"""The errors of the schema layer, the lowest in the house.

`ConfigError` is defined here, not in `pipeline`, because schema names and custom schema
references are configuration too and `schemas` imports nothing from `pipeline`;
`pipeline.errors` re-exports it as part of its error tree.
"""


class DocextractError(Exception):
    """Base of every error docextract raises on purpose."""


class ConfigError(DocextractError):
    """A setting, name or path the user gave cannot work. Raised at once, before any work."""
