"""A deterministic synthetic Bulk Data export: realistic mixes plus planted cases of each finding.

Cut-offs come from the loaded packs' parameters (RuleSet.params) and codes from their value sets,
so a planted case stays on the intended side of a threshold when a hospital's packs change it."""

from __future__ import annotations

import gzip
import zlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from cds_service.engine import EngineSettings

#: Synthetic cancer diagnoses (ICD-10-CM) by site, with their share among active cancers.
CANCER_SITES = (
    ("C18.7", "Malignant neoplasm of sigmoid colon", 0.18),
    ("C34.90", "Malignant neoplasm of unspecified part of bronchus or lung", 0.18),
    ("C50.911", "Malignant neoplasm of unspecified site of right female breast", 0.14),
    ("C25.0", "Malignant neoplasm of head of pancreas", 0.10),
    ("C16.9", "Malignant neoplasm of stomach, unspecified", 0.10),
    ("C22.0", "Liver cell carcinoma", 0.08),
    ("C61", "Malignant neoplasm of prostate", 0.12),
    ("C56.9", "Malignant neoplasm of unspecified ovary", 0.10),
)
HISTORY_CODE = ("Z85.038", "Personal history of other malignant neoplasm of large intestine")
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

#: Planted archetypes among patients with active cancer, and their shares.
ARCHETYPES = (
    ("screening-due", 0.22),
    ("ct-unanalysed", 0.12),
    ("normal-muscle", 0.11),
    ("pre-cachexia", 0.03),
    ("low-grip", 0.10),
    ("sarcopenia", 0.08),
    ("severe-sarcopenia", 0.05),
    ("low-smi-only", 0.06),
    ("sarcopenic-obesity", 0.04),
    ("cachexia", 0.07),
    ("refractory-cachexia", 0.02),
    ("inflammation", 0.05),
    ("case-finding", 0.03),
    ("implausible", 0.02),
)
#: Shares of the whole population.
ACTIVE_CANCER_SHARE = 0.45
HISTORY_ONLY_SHARE = 0.10
RESOURCES_PER_FILE = 50_000


@dataclass
class SynthStats:
    """What was written: counts by resource type and by planted archetype."""

    patients: int = 0
    resources: dict[str, int] = field(default_factory=dict)
    archetypes: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


class _Cutoffs:
    """Threshold values from the packs' parameters, for the configured profile and CT set."""

    def __init__(self, ruleset: Any, settings: EngineSettings) -> None:
        self.rs = ruleset
        self.profile = settings.profile
        self.ct = settings.ct_cutoffs or ruleset.default_ct_cutoffs(settings.profile)

    def value(self, name: str, sex: str = "female", bmi: float | None = None) -> float:
        spec = self.rs.params[name].spec_for(self.profile, self.ct)
        if spec is None:
            raise KeyError(f"parameter {name} has no value for {self.profile}/{self.ct}")
        if "value" in spec:
            return float(spec["value"])
        chosen = spec[sex]
        if isinstance(chosen, dict):  # bands, e.g. by BMI
            for band in chosen["bands"]:
                if "below" not in band or (bmi is not None and bmi < band["below"]):
                    return float(band["value"])
            return float(chosen["bands"][-1]["value"])
        return float(chosen)

    def plausible_max(self, fact: str) -> float:
        return float(self.rs.facts[fact].plausible["max"])


class _Writer:
    """NDJSON files per resource type, split every RESOURCES_PER_FILE lines, optionally gzip."""

    def __init__(self, out: Path, gzip_files: bool, stats: SynthStats) -> None:
        self.out, self.gzip, self.stats = out, gzip_files, stats
        self.handles: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def write(self, resource: dict[str, Any]) -> None:
        kind = resource["resourceType"]
        count = self.counts.get(kind, 0)
        if count % RESOURCES_PER_FILE == 0:
            if kind in self.handles:
                self.handles[kind].close()
            name = f"{kind}.{count // RESOURCES_PER_FILE + 1:03d}.ndjson" + (".gz" if self.gzip else "")
            path = self.out / name
            self.handles[kind] = gzip.open(path, "wb", compresslevel=1) if self.gzip else open(path, "wb")
            self.stats.files.append(name)
        self.handles[kind].write(orjson.dumps(resource) + b"\n")
        self.counts[kind] = count + 1

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.stats.resources = dict(sorted(self.counts.items()))


def _pick(rng: random.Random, weighted: tuple) -> Any:
    roll, total = rng.random(), 0.0
    for *item, share in weighted:
        total += share
        if roll < total:
            return item[0] if len(item) == 1 else tuple(item)
    return weighted[-1][0] if len(weighted[-1]) == 2 else tuple(weighted[-1][:-1])


class _Patient:
    """Builds one patient's resources, dated relative to the export date."""

    def __init__(self, pid: str, sex: str, as_of: datetime, rs: Any, rng: random.Random) -> None:
        self.pid, self.sex, self.as_of, self.rs, self.rng = pid, sex, as_of, rs, rng
        self.resources: list[dict[str, Any]] = []
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{self.pid}-{prefix}{self.n}"

    def when(self, days_ago: float) -> str:
        moment = self.as_of - timedelta(days=days_ago, minutes=self.rng.randint(0, 600))
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def code(self, value_set: str) -> tuple[str, str]:
        found = self.rs.value_sets[value_set].first_code()
        if found is None:
            raise KeyError(f"value set {value_set} has no exact code to write")
        return found

    def patient(self, age: int) -> None:
        birth = (self.as_of - timedelta(days=int(age * 365.25) + self.rng.randint(0, 300))).date()
        self.resources.append({
            "resourceType": "Patient", "id": self.pid, "gender": self.sex, "birthDate": birth.isoformat(),
            "meta": {"tag": [{"system": "urn:example:synthetic", "code": "synthetic"}]},
        })

    def condition(self, code: str, display: str | None, days_ago: float, status: str = "active",
                  system: str = ICD10CM) -> None:
        coding = {"system": system, "code": code, **({"display": display} if display else {})}
        self.resources.append({
            "resourceType": "Condition", "id": self._id("c"),
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{self.pid}"},
            "onsetDateTime": self.when(days_ago)[:10],
        })

    def obs(self, value_set: str, value: float, unit: str, days_ago: float, **extra: Any) -> str:
        system, code = self.code(value_set)
        ident = self._id("o")
        self.resources.append({
            "resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{self.pid}"},
            "effectiveDateTime": self.when(days_ago),
            "valueQuantity": {"value": round(value, 2), "unit": unit, "system": UCUM, "code": unit},
            **extra,
        })
        return ident

    def ct(self, days_ago: float) -> str:
        system, code = self.code("ct-l3-candidate")
        ident = self._id("ct")
        self.resources.append({
            "resourceType": "ImagingStudy", "id": ident, "status": "available",
            "subject": {"reference": f"Patient/{self.pid}"}, "started": self.when(days_ago),
            "modality": [{"system": DICOM, "code": "CT"}],
            "series": [{"uid": f"2.25.{zlib.crc32(ident.encode())}", "modality": {"system": DICOM, "code": "CT"},
                        "bodySite": {"system": system, "code": code}}],
        })
        return ident

    def encounter(self, days_ago: float) -> None:
        self.resources.append({
            "resourceType": "Encounter", "id": self._id("e"), "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{self.pid}"},
            "period": {"start": self.when(days_ago)},
        })


def _plant(p: _Patient, archetype: str, cut: _Cutoffs, rng: random.Random) -> None:
    """Measurements that put the patient on the intended side of the packs' cut-offs."""
    sex = p.sex
    height_cm = rng.gauss(176 if sex == "male" else 163, 6)
    h2 = (height_cm / 100) ** 2
    obese = archetype == "sarcopenic-obesity"
    bmi = cut.value("obesity_bmi") + rng.uniform(1, 4) if obese else rng.uniform(20.5, 27.5)
    weight = bmi * h2
    loss = 0.0
    if archetype in ("cachexia", "refractory-cachexia"):
        loss = cut.value("cachexia_weight_loss") + rng.uniform(1, 8)
    elif archetype == "pre-cachexia":  # some loss, not yet cachexia (Fearon 2011), with anorexia and raised CRP
        loss = rng.uniform(0.5, cut.value("cachexia_weight_loss_minor") - 0.5)
    elif archetype not in ("screening-due",):
        loss = rng.uniform(-1.5, min(1.5, cut.value("cachexia_weight_loss_minor") - 0.5))
    reference = weight / (1 - loss / 100)
    p.obs("body-height", height_cm, "cm", rng.uniform(5, 25))
    current_days_ago = rng.uniform(1, 20)
    # about six months before the current weight, inside the pack's reference window
    # (weight_reference_min_days..weight_reference_max_days before the current weight)
    window_end = cut.value("weight_reference_max_days")
    if window_end - 35 < cut.value("weight_reference_min_days"):
        raise ValueError("the packs' weight reference window is too short for synthetic six-month weights")
    p.obs("body-weight", reference, "kg", current_days_ago + window_end - 30 + rng.uniform(-5, 5))
    p.obs("body-weight", weight, "kg", current_days_ago)
    if archetype == "screening-due":
        return
    grip_cut = cut.value("grip_low", sex)
    low_grip = archetype in ("low-grip", "sarcopenia", "severe-sarcopenia")
    grip = grip_cut - rng.uniform(1, 5) if low_grip else grip_cut + rng.uniform(3, 12)
    if archetype == "implausible":
        grip = cut.plausible_max("grip_max") + rng.uniform(10, 50)
    if archetype != "ct-unanalysed":
        p.obs("grip-strength", grip, "kg", rng.uniform(2, 40))
    window = cut.value("ct_window_days")
    if archetype in ("ct-unanalysed", "sarcopenia", "severe-sarcopenia", "low-smi-only", "sarcopenic-obesity",
                     "normal-muscle", "cachexia", "refractory-cachexia"):
        ct = p.ct(rng.uniform(5, window - 20))
        if archetype != "ct-unanalysed":
            smi_cut = cut.value("smi_low", sex, bmi)
            low_smi = archetype in ("sarcopenia", "severe-sarcopenia", "low-smi-only", "sarcopenic-obesity")
            smi = smi_cut - rng.uniform(2, 8) if low_smi else smi_cut + rng.uniform(3, 12)
            p.obs("l3-skeletal-muscle-area", smi * h2, "cm2", rng.uniform(1, 4),
                  derivedFrom=[{"reference": f"ImagingStudy/{ct}"}])
    if archetype == "severe-sarcopenia":
        p.obs("gait-speed", cut.value("gait_slow") - rng.uniform(0.1, 0.3), "m/s", rng.uniform(2, 40))
    elif rng.random() < 0.3:
        p.obs("gait-speed", cut.value("gait_slow") + rng.uniform(0.1, 0.5), "m/s", rng.uniform(2, 40))
    if archetype == "pre-cachexia":
        system, code = p.code("anorexia")
        p.condition(code, None, rng.uniform(5, 60), system=system)
    if archetype in ("inflammation", "pre-cachexia"):
        days = rng.uniform(1, cut.value("lab_window_days") - 5)
        p.obs("crp", cut.value("crp_high") + rng.uniform(5, 60), "mg/L", days)
        p.obs("albumin", cut.value("albumin_low") - rng.uniform(2, 8), "g/L", days)
    elif rng.random() < 0.4:
        days = rng.uniform(1, cut.value("lab_window_days") - 5)
        p.obs("crp", rng.uniform(0.5, cut.value("crp_high") - 2), "mg/L", days)
        p.obs("albumin", cut.value("albumin_low") + rng.uniform(2, 8), "g/L", days)
    if archetype == "case-finding":
        p.obs("sarc-f-score", cut.value("sarc_f_positive") + rng.randint(0, 3), "{score}", rng.uniform(2, 40))
    if archetype == "refractory-cachexia":
        p.obs("ecog", cut.value("refractory_ecog") + rng.randint(0, 1), "{score}", rng.uniform(2, 30))
        p.obs("expected-survival", max(1.0, cut.value("refractory_survival") - 1), "mo", rng.uniform(2, 30))


def generate(
    out: Path, patients: int, *, ruleset: Any, settings: EngineSettings | None = None, seed: int = 1,
    as_of: datetime | None = None, gzip_files: bool = False,
) -> SynthStats:
    """Write `patients` synthetic patients as a Bulk Data export (NDJSON files) into `out`."""
    settings = settings or EngineSettings(ct_cutoffs=None)
    as_of = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cut = _Cutoffs(ruleset, settings)
    stats = SynthStats(patients=patients)
    writer = _Writer(out, gzip_files, stats)
    try:
        for index in range(1, patients + 1):
            sex = "female" if rng.random() < 0.5 else "male"
            p = _Patient(f"syn-{index:06d}", sex, as_of, ruleset, rng)
            p.patient(rng.randint(35, 88))
            roll = rng.random()
            if roll < ACTIVE_CANCER_SHARE:
                code, display = _pick(rng, CANCER_SITES)
                if code in ("C61",) and sex == "female" or code in ("C56.9", "C50.911") and sex == "male":
                    code, display = CANCER_SITES[0][:2]
                p.condition(code, display, rng.uniform(30, 700))
                archetype = _pick(rng, ARCHETYPES)
                _plant(p, archetype, cut, rng)
            else:
                archetype = "history-only" if roll < ACTIVE_CANCER_SHARE + HISTORY_ONLY_SHARE else "no-cancer"
                if archetype == "history-only":
                    p.condition(*HISTORY_CODE, rng.uniform(800, 3000), status="resolved")
                if rng.random() < 0.7:
                    p.obs("body-weight", rng.gauss(75, 12), "kg", rng.uniform(1, 200))
            for _ in range(rng.randint(0, 3)):
                p.encounter(rng.uniform(1, 365))
            stats.archetypes[archetype] = stats.archetypes.get(archetype, 0) + 1
            for resource in p.resources:
                writer.write(resource)
    finally:
        writer.close()
    stats.archetypes = dict(sorted(stats.archetypes.items()))
    (out / ".synth.json").write_bytes(orjson.dumps({
        "seed": seed, "patients": patients, "as_of": as_of.isoformat(), "profile": settings.profile,
        "ct_cutoffs": cut.ct, "resources": stats.resources, "archetypes": stats.archetypes, "files": stats.files,
    }, option=orjson.OPT_INDENT_2))
    return stats
