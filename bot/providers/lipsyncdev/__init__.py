"""LipSync.dev: `client` is the provider (its docstring is the one description of both API versions), `wires`
the two versions' headers, paths and bodies, `answers` how their answers and refusals are read.
"""

from bot.providers.lipsyncdev.client import LipSyncDevProvider

__all__ = ["LipSyncDevProvider"]
