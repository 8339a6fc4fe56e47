"""Fault injection and request statistics.

Faults are read per request from one small, locked settings object so that tests can change
them at run time through POST /emulator/v1/faults.
"""

import random
import threading

KEYS = {"error_rate": float, "throttle_rate": float, "retry_after": int, "latency_ms": float,
        "watch_drop_seconds": float, "gone_next_watch": int, "seed": int}


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self._rand = random.Random()
        self.settings = {}
        self.stats = {}

    @staticmethod
    def parse_spec(spec):
        out = {}
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or key not in KEYS:
                raise ValueError(f"bad fault '{part}': expected one of {', '.join(sorted(KEYS))} as key=value")
            out[key] = KEYS[key](value)
        return out

    def update(self, values, reset=False):
        with self._lock:
            if reset:
                self.settings = {}
            for key, value in values.items():
                if key == "reset":
                    continue
                if key not in KEYS:
                    raise ValueError(f"unknown fault '{key}'")
                if value is None:
                    self.settings.pop(key, None)
                else:
                    self.settings[key] = KEYS[key](value)
            if "seed" in values and values["seed"] is not None:
                self._rand.seed(int(values["seed"]))
            return dict(self.settings)

    def get(self, key, default=0):
        with self._lock:
            return self.settings.get(key, default)

    def roll(self, key):
        with self._lock:
            rate = self.settings.get(key, 0)
            return rate > 0 and self._rand.random() < rate

    def take_gone(self):
        """True once per unit of gone_next_watch."""
        with self._lock:
            n = self.settings.get("gone_next_watch", 0)
            if n > 0:
                self.settings["gone_next_watch"] = n - 1
                return True
            return False

    def count(self, verb, code):
        with self._lock:
            by_code = self.stats.setdefault(verb, {})
            by_code[str(code)] = by_code.get(str(code), 0) + 1

    def snapshot(self):
        with self._lock:
            return {"requests": {k: dict(v) for k, v in self.stats.items()},
                    "faults": dict(self.settings)}
