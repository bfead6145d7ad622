"""IEEE 11073-10101 (MDC) observation and unit codes the gateway understands.

Values and sources are in docs/protocols.md §4. One table serves every adapter, so a
weight is 188736 in kg whether it came as PCD-01, PHD FHIR, Open mHealth or vendor JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a reading is about. Assignments grant data per kind, so routing keys on this."""

    WEIGHT = "weight"
    BMI = "bmi"
    BLOOD_PRESSURE = "blood_pressure"
    PULSE = "pulse"
    SPO2 = "spo2"
    TEMPERATURE = "temperature"
    POSITION = "position"
    ALARM = "alarm"
    STATUS = "status"
    ACTIVITY = "activity"
    MEDICATION = "medication"
    GLUCOSE = "glucose"


@dataclass(frozen=True, slots=True)
class Metric:
    code: int
    ref_id: str
    kind: Kind
    ucum: str
    loinc: str | None
    mdc_unit: int


WEIGHT = Metric(188736, "MDC_MASS_BODY_ACTUAL", Kind.WEIGHT, "kg", "29463-7", 263875)
BMI = Metric(188752, "MDC_RATIO_MASS_BODY_LEN_SQ", Kind.BMI, "kg/m2", "39156-5", 264096)
BP_COMPOUND = Metric(150020, "MDC_PRESS_BLD_NONINV", Kind.BLOOD_PRESSURE, "mm[Hg]", "85354-9",
                     266016)
BP_SYSTOLIC = Metric(150021, "MDC_PRESS_BLD_NONINV_SYS", Kind.BLOOD_PRESSURE, "mm[Hg]", "8480-6",
                     266016)
BP_DIASTOLIC = Metric(150022, "MDC_PRESS_BLD_NONINV_DIA", Kind.BLOOD_PRESSURE, "mm[Hg]", "8462-4",
                      266016)
BP_MEAN = Metric(150023, "MDC_PRESS_BLD_NONINV_MEAN", Kind.BLOOD_PRESSURE, "mm[Hg]", None, 266016)
PULSE_CUFF = Metric(149546, "MDC_PULS_RATE_NON_INV", Kind.PULSE, "/min", "8867-4", 264864)
PULSE_OXIMETER = Metric(149530, "MDC_PULS_OXIM_PULS_RATE", Kind.PULSE, "/min", "8867-4", 264864)
SPO2 = Metric(150456, "MDC_PULS_OXIM_SAT_O2", Kind.SPO2, "%", "2708-6", 262688)
BODY_TEMPERATURE = Metric(150364, "MDC_TEMP_BODY", Kind.TEMPERATURE, "Cel", "8310-5", 268192)
# Blood glucose (ISO/IEEE 11073-10417) in mmol/L, as Swedish care reads it; mg/dL is converted.
GLUCOSE_CAPILLARY = Metric(160184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", Kind.GLUCOSE, "mmol/L",
                           "14743-9", 266866)
GLUCOSE_PLASMA = Metric(160368, "MDC_CONC_GLU_UNDETERMINED_PLASMA", Kind.GLUCOSE, "mmol/L",
                        "14749-6", 266866)

METRICS: dict[int, Metric] = {
    m.code: m
    for m in (WEIGHT, BMI, BP_COMPOUND, BP_SYSTOLIC, BP_DIASTOLIC, BP_MEAN, PULSE_CUFF,
              PULSE_OXIMETER, SPO2, BODY_TEMPERATURE, GLUCOSE_CAPILLARY, GLUCOSE_PLASMA)
}

# MDC unit codes (partition DIM) to UCUM, for adapters that receive MDC units (PCD-01 OBX-6).
MDC_UNITS: dict[int, str] = {
    263875: "kg",
    263904: "[lb_av]",
    266016: "mm[Hg]",
    265987: "kPa",
    262688: "%",
    264864: "/min",
    264096: "kg/m2",
    263441: "cm",
    268192: "Cel",
    266560: "[degF]",
    264274: "mg/dL",
    266866: "mmol/L",
}
# The same units by their MDC reference ids, for OBX-6 on the way out (PCD-01).
MDC_UNIT_REF_IDS: dict[int, str] = {
    263875: "MDC_DIM_KILO_G", 263904: "MDC_DIM_LB", 266016: "MDC_DIM_MMHG",
    265987: "MDC_DIM_KILO_PASCAL", 262688: "MDC_DIM_PERCENT", 264864: "MDC_DIM_BEAT_PER_MIN",
    264096: "MDC_DIM_KG_PER_M_SQ", 263441: "MDC_DIM_CENTI_M", 268192: "MDC_DIM_DEGC",
    266560: "MDC_DIM_FAHR", 264274: "MDC_DIM_MILLI_G_PER_DL", 266866: "MDC_DIM_MILLI_MOLE_PER_L",
}

# Device specialisation codes (INFRA partition), used to recognise the device row of PCD-01.
DEVICE_PROFILES: dict[int, str] = {
    528388: "pulse_oximeter",
    528391: "blood_pressure_meter",
    528399: "scale",
    528392: "thermometer",
}


def metric(code: int) -> Metric | None:
    return METRICS.get(code)
