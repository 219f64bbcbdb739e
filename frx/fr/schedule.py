"""Dynamic tail-dropout: the kept ratio beta moves from 1 towards the floor epsilon."""

from __future__ import annotations

import numbers

UNITS = ("step", "epoch")


def check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


class TailDropout:
    """beta <- beta - gamma * (beta - epsilon), once per `unit` ("step" or "epoch")."""

    def __init__(self, epsilon: float, gamma: float, unit: str = "step", beta: float = 1.0):
        self.epsilon = check_rate("epsilon", epsilon)
        self.gamma = check_rate("gamma", gamma)
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        self.unit = unit
        self.beta = float(beta)
        self.count = 0  # units advanced so far

    def advance(self) -> float:
        self.beta -= self.gamma * (self.beta - self.epsilon)
        self.count += 1
        return self.beta

    def state_dict(self) -> dict:
        return {"epsilon": self.epsilon, "gamma": self.gamma, "unit": self.unit,
                "beta": self.beta, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for key in ("epsilon", "gamma", "unit"):
            if state[key] != getattr(self, key):
                raise ValueError(f"checkpoint has {key}={state[key]!r}, this run has {getattr(self, key)!r}")
        self.beta = float(state["beta"])
        self.count = int(state["count"])
