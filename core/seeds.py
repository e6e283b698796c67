"""Run seeds: their range, a fresh one, one derived from another and a number (tuning trials), and when a run
asks for op determinism."""

import hashlib
import secrets

MAX_SEED = 2**31 - 1


def draw_seed() -> int:
    return secrets.randbelow(MAX_SEED) + 1


def derive_seed(seed: int, number: int) -> int:
    """A seed for the `number`th member of a family seeded with `seed` (a sweep's trials): members draw apart,
    and the same member always gets the same seed."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SEED + 1


def wants_deterministic_ops(seed_given: bool, deterministic_ops: str) -> bool:
    """--deterministic_ops auto: on when the user asked for a repeatable run (--seed); a drawn seed still repeats
    the data, the augmentation and the initial weights."""
    return deterministic_ops == "true" or (deterministic_ops == "auto" and seed_given)
