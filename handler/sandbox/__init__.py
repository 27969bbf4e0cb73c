"""A local emulator of the ECS (OpenStack Nova-compatible) metadata API, for tests and demos.

Never part of the deployed function: it exists so the janitor can run without a cloud account.
"""

from handler.sandbox.errors import SandboxConfigError
from handler.sandbox.faults import load_faults
from handler.sandbox.runner import Sandbox, serve_forever
from handler.sandbox.seed import DEMO_SEED, load_seed

__all__ = [
    "DEMO_SEED",
    "Sandbox",
    "SandboxConfigError",
    "load_faults",
    "load_seed",
    "serve_forever",
]
