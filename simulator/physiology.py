"""Plausible vital signs for simulated people: slow trends and noise, not clinical models.

Each person has a baseline; weight drifts slowly and, for a heart-failure scenario, can gain
more than 2 kg in 3 days (the rule nurses watch for, docs/architecture.md, "Who is who").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Person:
    seed: int
    rng: random.Random = field(init=False)
    weight_kg: float = field(init=False)
    height_m: float = field(init=False)
    systolic: float = field(init=False)
    diastolic: float = field(init=False)
    pulse: float = field(init=False)
    spo2: float = field(init=False)
    fluid_gain_per_day: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.weight_kg = self.rng.uniform(55, 110)
        self.height_m = self.rng.uniform(1.55, 1.90)
        self.systolic = self.rng.uniform(115, 160)
        self.diastolic = self.rng.uniform(65, 95)
        self.pulse = self.rng.uniform(58, 88)
        self.spo2 = self.rng.uniform(92, 98)

    def advance(self, days: float) -> None:
        self.weight_kg += self.rng.gauss(0, 0.15) * days ** 0.5 + self.fluid_gain_per_day * days

    def weight(self) -> float:
        return round(self.weight_kg + self.rng.gauss(0, 0.2), 1)

    def bmi(self) -> float:
        return round(self.weight_kg / self.height_m ** 2, 1)

    def blood_pressure(self) -> tuple[int, int, int]:
        sys = round(self.systolic + self.rng.gauss(0, 8))
        dia = round(min(self.diastolic + self.rng.gauss(0, 5), sys - 15))
        return sys, dia, round(dia + (sys - dia) / 3)

    def heart_rate(self) -> int:
        return round(self.pulse + self.rng.gauss(0, 4))

    def saturation(self) -> int:
        return min(100, round(self.spo2 + self.rng.gauss(0, 1)))
