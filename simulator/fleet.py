"""The simulated fleet: devices from a fleet file, each with a person behind it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from adapters import native
from gateway.ownership.registration import read_config
from simulator.physiology import Person


@dataclass
class SimDevice:
    id: str
    type: str
    token: str
    person: Person
    battery: float = 100.0

    def message(self, now: datetime) -> bytes:
        """One native-format message with what this kind of device measures."""
        p = self.person
        readings: list[dict[str, object]] = []
        if self.type == "scale":
            readings.append(native.encode_reading("weight", now, value=p.weight(), unit="kg"))
            readings.append(native.encode_reading("bmi", now, value=p.bmi(), unit="kg/m2"))
        elif self.type == "bp_meter":
            sys, dia, mean = p.blood_pressure()
            readings.append(native.encode_reading("blood_pressure", now, systolic=sys,
                                                  diastolic=dia, mean=mean, unit="mm[Hg]"))
            readings.append(native.encode_reading("pulse", now, value=p.heart_rate(),
                                                  unit="/min", via="cuff"))
        elif self.type == "pulse_oximeter":
            readings.append(native.encode_reading("spo2", now, value=p.saturation(), unit="%"))
            readings.append(native.encode_reading("pulse", now, value=p.heart_rate(),
                                                  unit="/min", via="oximeter"))
        self.battery = max(0.0, self.battery - 0.05)
        return native.encode_message(
            readings, status={"time": now.isoformat(), "battery": round(self.battery, 1)})


MEASURING_TYPES = ("scale", "bp_meter", "pulse_oximeter")


def load(path: Path) -> list[SimDevice]:
    config = read_config(path)
    return [SimDevice(d.id, d.type, d.token, Person(seed=i))
            for i, d in enumerate(config.device)
            if d.token is not None and d.type in MEASURING_TYPES]
