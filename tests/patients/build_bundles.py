"""Writes the synthetic patient bundles and draft-order bundles in this folder.

Only data lives here: each patient's resources, dated relative to the fixed evaluation
instant NOW (2026-11-28T12:00:00Z). This script computes dates and nothing else: no
cut-off, BMI, SMI or weight-loss figure is computed here. The expected findings in
expected.yaml were worked out by hand from the knowledge base (see the comments there).

Run:  python tests/patients/build_bundles.py   (rewrites the JSON files)
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
BASE = "https://fhir.example.org/r4"

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"
MEASURE = "https://sarcopenia-cds.org/CodeSystem/measure"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
OBSCAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def at(days: float, hour: int = 9, minute: int = 30) -> str:
    """Instant `days` days before NOW, at the given UTC time of day."""
    d = (NOW - timedelta(days=days)).replace(hour=hour, minute=minute, second=0)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def day(days: float) -> str:
    return at(days)[:10]


def born(years: int, month: int = 3, dom: int = 14) -> str:
    """Birth date giving age `years` at NOW (birthday already passed in 2026)."""
    return f"{NOW.year - years}-{month:02d}-{dom:02d}"


class P:
    """Collects one synthetic patient's resources."""

    def __init__(self, nn: str, slug: str, family: str, given: str, gender: str, age: int,
                 *, chinese: bool = False):
        self.nn, self.slug = nn, slug
        self.pid = f"syn-{nn}"
        self.ref = {"reference": f"Patient/{self.pid}"}
        self.resources: list[dict] = []
        self.counter = 0
        pat = {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": {"tag": [{"system": "urn:example:synthetic", "code": "synthetic",
                              "display": "Synthetic test patient - not a real person"}]},
            "identifier": [{"system": "urn:example:synthetic", "value": f"SYN-{nn}"}],
            "name": [{"use": "official", "family": "Synthetic", "given": [given],
                      "text": f"Synthetic, {given}"}],
            "gender": gender,
            "birthDate": born(age),
        }
        if chinese:
            pat["address"] = [{"city": "Shanghai", "country": "CN"}]
            pat["communication"] = [{"language": {"coding": [
                {"system": "urn:ietf:bcp:47", "code": "zh-CN", "display": "Chinese (China)"}]},
                "preferred": True}]
            pat["name"].append({"use": "usual", "family": "合成", "given": [family]})
        else:
            pat["address"] = [{"city": "Springfield", "country": "US"}]
        self.resources.append(pat)

    def _id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.pid}-{kind}-{self.counter}"

    def add(self, r: dict) -> dict:
        self.resources.append(r)
        return r

    # Conditions -------------------------------------------------------------------------
    def condition(self, code: str, display: str, text: str, onset_days: int, *,
                  system: str = ICD10CM, status: str = "active", abated_days: int | None = None,
                  category: str = "problem-list-item", note: str | None = None,
                  stage: str | None = None) -> dict:
        r = {
            "resourceType": "Condition",
            "id": self._id("cond"),
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": status}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed"}]},
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": category}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}],
                     "text": text},
            "subject": self.ref,
            "onsetDateTime": at(onset_days),
            "recordedDate": at(onset_days),
        }
        if abated_days is not None:
            r["abatementDateTime"] = at(abated_days)
        if stage:
            r["stage"] = [{"summary": {"text": stage}}]
        if note:
            r["note"] = [{"text": note}]
        return self.add(r)

    # Observations -----------------------------------------------------------------------
    def obs(self, system: str, code: str, display: str, days: float, value, unit: str,
            ucum: str, *, category: str = "exam", method: str | None = None,
            derived_from: str | None = None, note: str | None = None,
            hour: int = 9, minute: int = 30) -> dict:
        r = {
            "resourceType": "Observation",
            "id": self._id("obs"),
            "status": "final",
            "category": [{"coding": [{"system": OBSCAT, "code": category}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}],
                     "text": display},
            "subject": self.ref,
            "effectiveDateTime": at(days, hour, minute),
            "issued": at(days, hour, minute),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": ucum},
        }
        if method:
            r["method"] = {"text": method}
        if derived_from:
            r["derivedFrom"] = [{"reference": derived_from}]
        if note:
            r["note"] = [{"text": note}]
        return self.add(r)

    def weight(self, days, kg, **kw):
        return self.obs(LOINC, "29463-7", "Body weight", days, kg, "kg", "kg",
                        category="vital-signs", **kw)

    def height(self, days, cm):
        return self.obs(LOINC, "8302-2", "Body height", days, cm, "cm", "cm",
                        category="vital-signs")

    def bmi(self, days, value):
        return self.obs(LOINC, "39156-5", "Body mass index (BMI) [Ratio]", days, value,
                        "kg/m2", "kg/m2", category="vital-signs")

    def grip(self, days, left=None, right=None, unit="kg", local=False, **kw):
        ucum = unit
        shown = "lbf" if unit == "[lbf_av]" else unit
        out = []
        if local:
            for v in (left, right):
                if v is not None:
                    out.append(self.obs(MEASURE, "grip-strength", "Grip strength (maximum)",
                                        days, v, shown, ucum, method="Jamar dynamometer", **kw))
            return out
        if left is not None:
            out.append(self.obs(LOINC, "83173-5", "Grip strength Hand - left Dynamometer",
                                days, left, shown, ucum, **kw))
        if right is not None:
            out.append(self.obs(LOINC, "83174-3", "Grip strength Hand - right Dynamometer",
                                days, right, shown, ucum, **kw))
        return out

    def gait(self, days, ms, course="4 m"):
        return self.obs(MEASURE, "gait-speed", "Usual gait speed", days, ms, "m/s", "m/s",
                        note=f"Course length {course}, usual pace")

    def chair(self, days, s):
        return self.obs(MEASURE, "five-times-sit-to-stand", "Five-times sit-to-stand time",
                        days, s, "s", "s")

    def sppb(self, days, score):
        return self.obs(MEASURE, "sppb-score", "SPPB total score", days, score, "score",
                        "{score}", category="survey")

    def sarcf(self, days, score):
        return self.obs(MEASURE, "sarc-f-score", "SARC-F total score", days, score, "score",
                        "{score}", category="survey")

    def calf(self, days, cm):
        return self.obs(MEASURE, "calf-circumference", "Calf circumference", days, cm, "cm",
                        "cm")

    def survival(self, days, months):
        return self.obs(MEASURE, "expected-survival", "Clinician-estimated expected survival",
                        days, months, "months", "mo", category="survey")

    def l3_area(self, days, cm2, study):
        return self.obs(MEASURE, "l3-skeletal-muscle-area", "L3 skeletal muscle area",
                        days, cm2, "cm2", "cm2", category="imaging",
                        derived_from=f"ImagingStudy/{study['id']}",
                        method="CT single slice at L3, -29 to +150 HU")

    def l3_smi(self, days, value, study):
        return self.obs(MEASURE, "l3-skeletal-muscle-index", "L3 skeletal muscle index",
                        days, value, "cm2/m2", "cm2/m2", category="imaging",
                        derived_from=f"ImagingStudy/{study['id']}",
                        method="CT single slice at L3, -29 to +150 HU")

    def crp(self, days, value, unit="mg/L", hour=7, minute=40):
        return self.obs(LOINC, "1988-5",
                        "C reactive protein [Mass/volume] in Serum or Plasma", days, value,
                        unit, unit, category="laboratory", hour=hour, minute=minute)

    def albumin(self, days, value, unit="g/L", hour=7, minute=40):
        return self.obs(LOINC, "1751-7", "Albumin [Mass/volume] in Serum or Plasma", days,
                        value, unit, unit, category="laboratory", hour=hour, minute=minute)

    def ecog(self, days, grade):
        r = {
            "resourceType": "Observation",
            "id": self._id("obs"),
            "status": "final",
            "category": [{"coding": [{"system": OBSCAT, "code": "survey"}]}],
            "code": {"coding": [{"system": LOINC, "code": "89247-1",
                                 "display": "ECOG Performance Status score"}],
                     "text": "ECOG performance status"},
            "subject": self.ref,
            "effectiveDateTime": at(days),
            "valueInteger": grade,
        }
        return self.add(r)

    def anorexia_obs(self, days):
        r = {
            "resourceType": "Observation",
            "id": self._id("obs"),
            "status": "final",
            "category": [{"coding": [{"system": OBSCAT, "code": "exam"}]}],
            "code": {"coding": [{"system": ICD10CM, "code": "R63.0", "display": "Anorexia"}],
                     "text": "Loss of appetite"},
            "subject": self.ref,
            "effectiveDateTime": at(days),
            "valueBoolean": True,
        }
        return self.add(r)

    def lab(self, code: str, display: str, days: float, value, unit: str, ucum: str, **kw):
        return self.obs(LOINC, code, display, days, value, unit, ucum, category="laboratory",
                        **kw)

    def platelets(self, days, value):
        return self.lab("777-3", "Platelets [#/volume] in Blood by Automated count", days,
                        value, "10*3/uL", "10*3/uL")

    def haemoglobin(self, days, value, unit="g/dL"):
        return self.lab("718-7", "Hemoglobin [Mass/volume] in Blood", days, value, unit, unit)

    def egfr(self, days, value):
        return self.lab("98979-8", "Glomerular filtration rate/1.73 sq M.predicted [Volume "
                        "Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula "
                        "(CKD-EPI 2021)", days, value, "mL/min/1.73m2", "mL/min/{1.73_m2}")

    def temperature(self, days, celsius, hour=9, minute=30):
        return self.obs(LOINC, "8310-5", "Body temperature", days, celsius, "°C", "Cel",
                        category="vital-signs", hour=hour, minute=minute)

    def asmi(self, days, value, method):
        return self.obs(MEASURE, "appendicular-skeletal-muscle-mass-index",
                        "Appendicular skeletal muscle mass index", days, value, "kg/m2",
                        "kg/m2", method=method)

    def coded_obs(self, system: str, code: str, display: str, days: float, answer: dict,
                  *, category: str = "survey") -> dict:
        """An Observation whose value is a coded answer (valueCodeableConcept)."""
        r = {
            "resourceType": "Observation",
            "id": self._id("obs"),
            "status": "final",
            "category": [{"coding": [{"system": OBSCAT, "code": category}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}],
                     "text": display},
            "subject": self.ref,
            "effectiveDateTime": at(days),
            "valueCodeableConcept": {"coding": [answer], "text": answer["display"]},
        }
        return self.add(r)

    def ecog_answer(self, days, code, display):
        """ECOG 89247-1 with a LOINC answer (answer list LL529-9) instead of an integer."""
        return self.coded_obs(LOINC, "89247-1", "ECOG Performance Status score", days,
                              {"system": LOINC, "code": code, "display": display})

    def pregnancy_status(self, days):
        return self.coded_obs(LOINC, "82810-3", "Pregnancy status", days,
                              {"system": LOINC, "code": "LA15173-0", "display": "Pregnant"},
                              category="social-history")

    def imaging_without_modality(self, days, proc_code, proc_display, description):
        """An ImagingStudy with a procedure code but no modality and no series (an imported
        outside report): FHIR R4 requires series.modality, so the series are left out."""
        r = {
            "resourceType": "ImagingStudy",
            "id": self._id("img"),
            "status": "available",
            "subject": self.ref,
            "started": at(days, 10, 15),
            "procedureCode": [{"coding": [{"system": LOINC, "code": proc_code,
                                           "display": proc_display}],
                               "text": proc_display}],
            "description": description,
        }
        return self.add(r)

    # Imaging ----------------------------------------------------------------------------
    def ct(self, days, body_code, body_display, proc_code, proc_display, description,
           *, proc_system=LOINC):
        sid = self._id("img")
        r = {
            "resourceType": "ImagingStudy",
            "id": sid,
            "status": "available",
            "identifier": [{"system": "urn:dicom:uid",
                            "value": f"urn:oid:2.25.{int(hashlib.sha256(sid.encode()).hexdigest()[:16], 16)}"}],
            "modality": [{"system": DCM, "code": "CT"}],
            "subject": self.ref,
            "started": at(days, 10, 15),
            "numberOfSeries": 1,
            "numberOfInstances": 420,
            "procedureCode": [{"coding": [{"system": proc_system, "code": proc_code,
                                           "display": proc_display}],
                               "text": proc_display}],
            "description": description,
            "series": [{
                "uid": f"2.25.{self.nn}{self.counter}1",
                "number": 1,
                "modality": {"system": DCM, "code": "CT"},
                "description": description,
                "numberOfInstances": 420,
                "bodySite": {"system": SCT, "code": body_code, "display": body_display},
            }],
        }
        return self.add(r)

    def ct_abdomen_pelvis(self, days, description="CT abdomen and pelvis with IV contrast"):
        return self.ct(days, "818982008", "Abdomen and Pelvis", "36813-4",
                       "CT Abdomen and Pelvis W contrast IV", description)

    # Orders -----------------------------------------------------------------------------
    def medreq(self, coding: dict | None, text: str, days: float, *, status="active",
               intent="order", add=True, rid=None) -> dict:
        r = {
            "resourceType": "MedicationRequest",
            "id": rid or self._id("mr"),
            "status": status,
            "intent": intent,
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                "code": "outpatient"}]}],
            "medicationCodeableConcept": ({"coding": [coding], "text": text} if coding
                                          else {"text": text}),
            "subject": self.ref,
            "authoredOn": at(days),
            "dosageInstruction": [{"text": text}],
        }
        return self.add(r) if add else r

    def surgery(self, code: dict | None, text: str, days: float, *, status="draft",
                add=False, rid=None) -> dict:
        r = {
            "resourceType": "ServiceRequest",
            "id": rid or self._id("sr"),
            "status": status,
            "intent": "order",
            "category": [{"coding": [{"system": SCT, "code": "387713003",
                                      "display": "Surgical procedure"}]}],
            "code": {"text": text} if code is None else {"coding": [code], "text": text},
            "subject": self.ref,
            "authoredOn": at(days),
        }
        return self.add(r) if add else r

    # Output -----------------------------------------------------------------------------
    def bundle(self) -> dict:
        return {
            "resourceType": "Bundle",
            "id": f"{self.pid}-bundle",
            "meta": {"tag": [{"system": "urn:example:synthetic", "code": "synthetic"}]},
            "type": "collection",
            "timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r}
                      for r in self.resources],
        }

    def write(self):
        path = HERE / f"{self.nn}-{self.slug}.json"
        path.write_text(json.dumps(self.bundle(), indent=1, ensure_ascii=False) + "\n")
        return path

    def write_order(self, name: str, resources: list[dict]):
        (HERE / "orders").mkdir(exist_ok=True)
        b = {
            "resourceType": "Bundle",
            "id": f"{self.pid}-draft-{name}",
            "meta": {"tag": [{"system": "urn:example:synthetic", "code": "synthetic"}]},
            "type": "collection",
            "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r}
                      for r in resources],
        }
        path = HERE / "orders" / f"{self.nn}-{self.slug}-{name}.json"
        path.write_text(json.dumps(b, indent=1, ensure_ascii=False) + "\n")
        return path


def atc(code, display):
    return {"system": ATC, "code": code, "display": display}


def rxn(code, display):
    return {"system": RXNORM, "code": code, "display": display}


# =========================================================================================
# The patients. Day counts are "days before NOW"; see expected.yaml for what each must give.
# =========================================================================================

def build() -> list[Path]:
    out: list[Path] = []

    # 01 - pancreatic, woman 68, palliative: severe sarcopenia + cachexia -------------------
    p = P("01", "pancreatic-severe-sarcopenia-cachexia-f", "Ada", "Ada", "female", 68)
    p.condition("C25.0", "Malignant neoplasm of head of pancreas",
                "Pancreatic ductal adenocarcinoma, head", 240,
                stage="Stage IV (liver metastases)",
                note="Palliative intent: first-line gemcitabine + nab-paclitaxel.")
    p.condition("C78.7", "Secondary malignant neoplasm of liver and intrahepatic bile duct",
                "Liver metastases", 240)
    p.height(240, 162)
    p.weight(240, 63.0)
    p.weight(185, 61.5)
    p.weight(120, 58.0)
    p.weight(60, 55.5)
    p.weight(10, 54.0)
    p.grip(60, left=16.5, right=17.0)          # older session (normal), not the latest
    p.grip(5, left=13.5, right=14.0)           # latest session
    p.gait(5, 0.6)
    p.ecog(5, 1)
    ct = p.ct_abdomen_pelvis(20)
    p.l3_area(20, 96.5, ct)
    p.crp(3, 6.0)
    p.albumin(3, 33.0)
    p.medreq(rxn("12574", "gemcitabine"), "Gemcitabine 1000 mg/m2 IV days 1, 8, 15 q28d",
             90, status="completed")
    out.append(p.write())
    out.append(p.write_order("gemcitabine-rxnorm", [p.medreq(
        rxn("12574", "gemcitabine"), "Gemcitabine 1000 mg/m2 IV day 1 (cycle 4)", 0,
        status="draft", add=False, rid="syn-01-draft-gemcitabine")]))

    # 02 - NSCLC, man 64, curative: confirmed sarcopenia, Martin BMI >= 25 branch ---------
    p = P("02", "nsclc-sarcopenia-bmi27-m", "Ben", "Ben", "male", 64)
    p.condition("C34.11", "Malignant neoplasm of upper lobe, right bronchus or lung",
                "Lung adenocarcinoma, right upper lobe", 45, stage="Stage IIIA",
                note="Curative intent: neoadjuvant chemotherapy then lobectomy planned.")
    p.height(45, 175)
    p.weight(180, 83.0)
    p.weight(45, 82.5)
    p.weight(7, 82.0)
    p.grip(10, left=54, right=57, unit="[lbf_av]")     # NIH Toolbox unit
    p.gait(10, 1.1)
    p.sppb(10, 11)
    p.ecog(7, 0)
    ct = p.ct(30, "818982008", "Abdomen and Pelvis", "36813-4",
              "CT Abdomen and Pelvis W contrast IV", "CT chest, abdomen and pelvis staging")
    p.l3_smi(30, 48.0, ct)
    out.append(p.write())
    out.append(p.write_order("gemcitabine-atc", [p.medreq(
        atc("L01BC05", "gemcitabine"), "Gemcitabine 1250 mg/m2 IV day 1, 8 + cisplatin",
        0, status="draft", add=False, rid="syn-02-draft-gemcitabine")]))
    out.append(p.write_order("lobectomy", [p.surgery(
        None, "Right upper lobectomy, video-assisted", 0, rid="syn-02-draft-lobectomy")]))

    # 03 - colorectal, woman 71, curative: probable sarcopenia, SARC-F 5 ------------------
    p = P("03", "colorectal-probable-sarcopenia-f", "Cleo", "Cleo", "female", 71)
    p.condition("C18.7", "Malignant neoplasm of sigmoid colon", "Sigmoid colon adenocarcinoma",
                120, stage="Stage III (pT3 N1 M0), resected",
                note="Curative intent: adjuvant capecitabine.")
    p.height(120, 158)
    p.weight(182, 66.0)
    p.weight(90, 65.5)
    p.weight(6, 65.0)
    p.grip(100, right=17.5, local=True)
    p.grip(14, left=12.8, right=14.2, local=True)
    p.gait(14, 0.9)
    p.sarcf(14, 5)
    p.ecog(14, 1)
    p.medreq(atc("L01BC06", "capecitabine"), "Capecitabine 1250 mg/m2 twice daily d1-14 q21d",
             60)
    out.append(p.write())

    # 04 - HCC, Chinese man 58, curative: low SMI, normal grip ----------------------------
    p = P("04", "hcc-low-smi-normal-grip-m", "Wei", "Wei", "male", 58, chinese=True)
    p.condition("C22.0", "Liver cell carcinoma", "Hepatocellular carcinoma, segment VI", 35,
                system=ICD10, stage="BCLC A", note="Curative intent: resection planned.")
    p.height(35, 170)
    p.weight(185, 70.5)
    p.weight(35, 70.2)
    p.weight(4, 70.0)
    p.grip(12, left=36.5, right=38.0)
    p.gait(12, 1.2, course="6 m")
    p.ecog(12, 0)
    ct = p.ct(28, "818981001", "Abdomen", "41806-1", "CT Abdomen",
              "CT abdomen triphasic liver protocol")
    p.l3_area(28, 118.0, ct)
    out.append(p.write())
    out.append(p.write_order("hepatectomy", [p.surgery(
        None, "Right posterior sectionectomy (partial hepatectomy)", 0,
        rid="syn-04-draft-hepatectomy")]))

    # 05 - breast, woman 62, curative: sarcopenic obesity (WHO BMI >= 30), letrozole ------
    p = P("05", "breast-sarcopenic-obesity-f", "Edith", "Edith", "female", 62)
    p.condition("C50.412", "Malignant neoplasm of upper-outer quadrant of left female breast",
                "Invasive ductal carcinoma left breast, ER+ HER2-", 70, stage="Stage IIIA",
                note="Curative intent: surgery done; adjuvant endocrine therapy to start.")
    p.height(70, 160)
    p.weight(181, 84.5)
    p.weight(70, 84.2)
    p.weight(8, 84.0)
    p.grip(15, left=21.0, right=22.0)
    p.chair(15, 10.5)
    p.ecog(15, 0)
    ct = p.ct(40, "818982008", "Abdomen and Pelvis", "36813-4",
              "CT Abdomen and Pelvis W contrast IV", "Staging CT chest, abdomen and pelvis")
    p.l3_area(40, 99.0, ct)
    out.append(p.write())
    out.append(p.write_order("letrozole", [p.medreq(
        atc("L02BG04", "letrozole"), "Letrozole 2.5 mg orally once daily", 0,
        status="draft", add=False, rid="syn-05-draft-letrozole")]))

    # 06 - gastric, Chinese man 66, curative: AWGS sarcopenia, BMI 28.5, calf 32 ----------
    p = P("06", "gastric-awgs-sarcopenic-obesity-m", "Jun", "Jun", "male", 66, chinese=True)
    p.condition("C16.3", "Malignant neoplasm of pyloric antrum", "Gastric adenocarcinoma, antrum",
                30, system=ICD10, stage="cT3 N1 M0",
                note="Curative intent: distal gastrectomy planned.")
    p.height(30, 168)
    p.weight(179, 81.0)
    p.weight(30, 80.8)
    p.weight(3, 80.5)
    p.grip(9, left=29.0, right=30.5)
    p.gait(9, 0.85, course="6 m")
    p.calf(9, 32.0)
    p.sarcf(9, 2)
    p.ecog(9, 1)
    ct = p.ct_abdomen_pelvis(25)
    p.l3_area(25, 112.0, ct)
    out.append(p.write())
    out.append(p.write_order("gastrectomy", [p.surgery(
        None, "Laparoscopic distal gastrectomy with D2 lymphadenectomy", 0,
        rid="syn-06-draft-gastrectomy")]))

    # 07 - NSCLC, man 72, palliative: cachexia by BMI < 20 and loss > 2 %, mGPS 2 ---------
    p = P("07", "nsclc-cachexia-low-bmi-mgps2-m", "Hugo", "Hugo", "male", 72)
    p.condition("C34.31", "Malignant neoplasm of lower lobe, right bronchus or lung",
                "Squamous cell carcinoma of lung, right lower lobe", 150,
                stage="Stage IVA (pleural)", note="Palliative intent: pembrolizumab.")
    p.height(150, 178)
    p.weight(181, 62.0)
    p.weight(90, 61.0)
    p.weight(6, 60.0)
    p.grip(6, left=27.5, right=29.0)
    p.gait(6, 0.75)
    p.ecog(6, 2)
    p.crp(5, 25.0)
    p.albumin(5, 31.0)
    p.medreq(atc("L01FF02", "pembrolizumab"), "Pembrolizumab 200 mg IV q21d", 120)
    out.append(p.write())

    # 08 - rectal, woman 59, curative: pre-cachexia, mGPS 1 --------------------------------
    p = P("08", "rectal-pre-cachexia-mgps1-f", "Ines", "Ines", "female", 59)
    p.condition("C20", "Malignant neoplasm of rectum", "Rectal adenocarcinoma", 60,
                stage="cT3 N1 M0", note="Curative intent: total neoadjuvant therapy.")
    p.condition("R63.0", "Anorexia", "Loss of appetite", 40, category="encounter-diagnosis")
    p.height(60, 165)
    p.weight(180, 70.0)
    p.weight(60, 69.0)
    p.weight(7, 68.0)
    p.grip(7, left=19.0, right=20.0)
    p.ecog(7, 0)
    p.crp(7, 18.0)
    p.albumin(7, 38.0)
    out.append(p.write())

    # 09 - pancreatic, man 77, palliative: refractory cachexia; CRP mg/dL, albumin g/dL ---
    p = P("09", "pancreatic-refractory-cachexia-m", "Karl", "Karl", "male", 77)
    p.condition("C25.9", "Malignant neoplasm of pancreas, unspecified",
                "Pancreatic adenocarcinoma", 270, stage="Stage IV (peritoneal, liver)",
                note="Palliative intent; progressing after two lines of chemotherapy.")
    p.height(270, 172)
    p.weight(180, 74.0)
    p.weight(100, 69.0)
    p.weight(45, 64.0)
    p.weight(7, 61.0)
    p.grip(7, left=18.0, right=19.5)
    p.ecog(3, 3)
    p.survival(3, 2)
    p.crp(3, 2.5, unit="mg/dL")
    p.albumin(3, 3.1, unit="g/dL")
    p.medreq(atc("L01BC02", "fluorouracil"), "FOLFIRINOX (stopped for progression)", 150,
             status="stopped")
    out.append(p.write())

    # 10 - head and neck, man 61, curative: screening due; chest-only CT -------------------
    p = P("10", "head-neck-screening-due-chest-ct-m", "Leo", "Leo", "male", 61)
    p.condition("C10.9", "Malignant neoplasm of oropharynx, unspecified",
                "Oropharyngeal squamous cell carcinoma, HPV+", 140, stage="cT2 N1 M0",
                note="Curative intent: chemoradiotherapy.")
    p.height(140, 172)
    p.weight(182, 68.5)
    p.weight(90, 68.2)
    p.weight(9, 68.0)
    p.grip(120, left=34.0, right=35.0)            # outdated (> 90 days)
    p.ecog(9, 0)
    p.ct(30, "43799004", "Chest", "24627-2", "CT Chest", "CT chest (thorax) staging")
    out.append(p.write())

    # 11 - lymphoma, woman 52, curative: no assessment ever; abdominal CT without L3 -----
    p = P("11", "lymphoma-ct-available-first-cycle-f", "Mira", "Mira", "female", 52)
    p.condition("C83.38", "Diffuse large B-cell lymphoma, lymph nodes of multiple sites",
                "Diffuse large B-cell lymphoma", 32, stage="Ann Arbor stage III",
                note="Curative intent: R-CHOP x 6 planned, first cycle not yet given.")
    p.height(32, 166)
    p.weight(185, 63.0)
    p.weight(32, 62.8)
    p.weight(2, 62.5)
    p.ecog(2, 1)
    p.ct_abdomen_pelvis(30, "Staging CT abdomen and pelvis with IV contrast")
    out.append(p.write())
    out.append(p.write_order("r-chop-cycle1", [
        p.medreq(atc("L01AA01", "cyclophosphamide"), "Cyclophosphamide 750 mg/m2 IV day 1",
                 0, status="draft", add=False, rid="syn-11-draft-cyclophosphamide"),
        p.medreq(rxn("121191", "rituximab"), "Rituximab 375 mg/m2 IV day 1", 0,
                 status="draft", add=False, rid="syn-11-draft-rituximab"),
    ]))

    # 12 - history of breast cancer only (Z85.3), woman 70: no findings -------------------
    p = P("12", "breast-history-only-no-findings-f", "Nora", "Nora", "female", 70)
    p.condition("Z85.3", "Personal history of malignant neoplasm of breast",
                "History of breast cancer (treated 2016, no evidence of disease)", 3650)
    p.height(400, 157)
    p.weight(182, 60.0)
    p.weight(5, 54.0)
    p.grip(5, left=11.0, right=12.0)
    p.sarcf(5, 6)
    p.gait(5, 0.7)
    p.crp(5, 30.0)
    p.albumin(5, 32.0)
    p.ct_abdomen_pelvis(30, "CT abdomen and pelvis for abdominal pain")
    out.append(p.write())

    # 13 - prostate cancer resolved, man 74: no findings -----------------------------------
    p = P("13", "prostate-resolved-no-findings-m", "Otto", "Otto", "male", 74)
    p.condition("C61", "Malignant neoplasm of prostate", "Prostate adenocarcinoma", 1460,
                status="resolved", abated_days=1100,
                note="Radical prostatectomy 2023; PSA undetectable since.")
    p.height(400, 175)
    p.weight(181, 80.0)
    p.weight(6, 74.0)
    p.grip(6, left=21.0, right=22.0)
    p.gait(6, 0.7)
    ct = p.ct_abdomen_pelvis(40, "CT abdomen and pelvis, diverticulitis")
    p.l3_area(40, 120.0, ct)
    out.append(p.write())

    # 14 - prostate mCRPC, man 69, palliative: implausible values ------------------------
    p = P("14", "prostate-implausible-values-m", "Pavel", "Pavel", "male", 69)
    p.condition("C61", "Malignant neoplasm of prostate",
                "Metastatic castration-resistant prostate cancer", 900,
                stage="mCRPC, bone metastases", note="Palliative intent: docetaxel.")
    p.height(300, 176)
    p.weight(240, 74.0)
    p.weight(180, 73.5)
    p.weight(90, 73.0)
    p.weight(20, 72.5)
    p.weight(10, 72.0, hour=8, minute=0)
    p.weight(10, 66.0, hour=14, minute=0)
    p.weight(2, -72.0)
    p.grip(20, left=22.5, right=24.0)
    p.grip(3, right=400)
    p.ecog(3, 2)
    p.medreq(None, "Docetaxel 75 mg/m2 IV q21d", 60)
    out.append(p.write())

    # 15 - gastric, man 63, curative: BMI exactly 25.0 -> Martin 53 ------------------------
    p = P("15", "gastric-bmi-exactly-25-m", "Quentin", "Quentin", "male", 63)
    p.condition("C16.0", "Malignant neoplasm of cardia", "Adenocarcinoma of gastric cardia",
                50, stage="cT2 N0 M0", note="Curative intent: gastrectomy planned.")
    p.height(50, 180)
    p.weight(180, 81.5)
    p.weight(50, 81.2)
    p.weight(4, 81.0)
    p.bmi(4, 25.0)
    p.grip(11, left=33.0, right=34.0)
    p.gait(11, 1.0)
    p.ecog(11, 0)
    ct = p.ct_abdomen_pelvis(45)
    p.l3_smi(45, 50.0, ct)
    out.append(p.write())
    out.append(p.write_order("gastrectomy", [p.surgery(
        None, "Total gastrectomy", 0, rid="syn-15-draft-gastrectomy")]))

    # 16 - larynx, woman 55, curative: loss exactly 5 %, CRP exactly 10, anorexia ---------
    p = P("16", "larynx-boundaries-loss5-crp10-f", "Rosa", "Rosa", "female", 55)
    p.condition("C32.9", "Malignant neoplasm of larynx, unspecified",
                "Laryngeal squamous cell carcinoma", 75, stage="cT2 N0 M0",
                note="Curative intent: radiotherapy.")
    p.condition("R63.0", "Anorexia", "Reduced appetite during radiotherapy", 20,
                category="encounter-diagnosis")
    p.height(75, 165)
    p.weight(180, 60.0)
    p.weight(75, 59.5)
    p.weight(5, 57.0)
    p.grip(5, left=20.0, right=21.0)
    p.ecog(5, 0)
    p.crp(5, 10.0)
    p.albumin(5, 33.0)
    out.append(p.write())

    out.extend(build_care_context())
    return out


def build_care_context() -> list[Path]:
    """Patients 17-31: the care context that changes the advice (KB §1.9, issue 14)."""
    out: list[Path] = []

    # 17 - breast cancer in pregnancy, woman 33: BIA and BMI unusable --------------------
    p = P("17", "breast-pregnant-bia-bmi-f", "Sofia", "Sofia", "female", 33)
    p.condition("C50.911", "Malignant neoplasm of unspecified site of right female breast",
                "Invasive ductal carcinoma right breast, diagnosed in pregnancy", 40,
                stage="cT2 N1 M0", note="Curative intent: chemotherapy in the second trimester.")
    p.pregnancy_status(10)
    p.height(40, 165)
    p.weight(170, 79.0)
    p.weight(40, 82.0)
    p.weight(10, 84.0)
    p.grip(10, left=13.0, right=14.0)
    p.gait(10, 1.1)
    p.asmi(10, 5.0, "BIA")
    p.ecog(10, 0)
    out.append(p.write())

    # 18 - osteosarcoma, boy 16: no adult criteria under 18 ------------------------------
    p = P("18", "osteosarcoma-adolescent-m", "Tom", "Tom", "male", 16)
    p.condition("C40.21", "Malignant neoplasm of long bones of right lower limb",
                "Osteosarcoma of the right distal femur", 60, stage="Localised",
                note="Curative intent: MAP chemotherapy then limb-sparing surgery.")
    p.height(60, 172)
    p.weight(185, 62.0)
    p.weight(60, 60.0)
    p.weight(5, 55.0)
    p.grip(5, left=17.0, right=18.0)
    p.gait(5, 0.7)
    p.ecog(5, 1)
    ct = p.ct_abdomen_pelvis(25, "Staging CT chest, abdomen and pelvis")
    p.l3_smi(25, 35.0, ct)
    out.append(p.write())
    out.append(p.write_order("methotrexate", [p.medreq(
        atc("L01BA01", "methotrexate"), "High-dose methotrexate 12 g/m2 IV (MAP cycle 3)", 0,
        status="draft", add=False, rid="syn-18-draft-methotrexate")]))

    # 19 - thigh sarcoma after above-knee amputation, man 58: no weight-loss finding -----
    p = P("19", "thigh-sarcoma-above-knee-amputation-m", "Ulf", "Ulf", "male", 58)
    p.condition("C49.21", "Malignant neoplasm of connective and soft tissue of right lower "
                "limb, including hip", "Undifferentiated pleomorphic sarcoma, right thigh", 220,
                note="Curative intent: above-knee amputation 90 days ago, adjuvant chemotherapy.")
    p.condition("Z89.611", "Acquired absence of right leg above knee",
                "Right above-knee amputation", 90)
    p.height(220, 180)
    p.weight(200, 79.0)
    p.weight(150, 78.0)
    p.weight(30, 67.0)
    p.weight(5, 66.0)
    p.grip(5, left=30.0, right=31.0)
    p.ecog(5, 1)
    out.append(p.write())

    # 20 - caecal cancer with CKD stage 4, woman 70: no computed protein target ----------
    p = P("20", "caecal-ckd4-sarcopenia-f", "Vera", "Vera", "female", 70)
    p.condition("C18.0", "Malignant neoplasm of cecum", "Caecal adenocarcinoma", 80,
                stage="Stage III, resected", note="Curative intent: adjuvant capecitabine.")
    p.condition("N18.4", "Chronic kidney disease, stage 4 (severe)", "CKD stage 4", 900)
    p.egfr(10, 24)
    p.height(80, 160)
    p.weight(180, 63.0)
    p.weight(80, 62.5)
    p.weight(10, 62.0)
    p.grip(10, left=12.0, right=13.0)
    p.gait(10, 0.9)
    p.ecog(10, 1)
    ct = p.ct_abdomen_pelvis(30)
    p.l3_smi(30, 37.0, ct)
    out.append(p.write())

    # 21 - gastric cancer on haemodialysis, man 66: no computed protein target -----------
    p = P("21", "gastric-haemodialysis-low-smi-m", "Walt", "Walt", "male", 66)
    p.condition("C16.9", "Malignant neoplasm of stomach, unspecified", "Gastric adenocarcinoma",
                50, stage="cT3 N0 M0", note="Curative intent: perioperative FLOT.")
    p.condition("N18.6", "End stage renal disease", "End-stage kidney disease", 1200)
    p.condition("Z99.2", "Dependence on renal dialysis", "Haemodialysis three times a week",
                1100)
    p.height(50, 170)
    p.weight(180, 68.5)
    p.weight(50, 68.2)
    p.weight(6, 68.0)
    p.grip(6, left=29.0, right=30.0)
    p.gait(6, 1.0)
    p.ecog(6, 1)
    ct = p.ct(35, "818981001", "Abdomen", "41806-1", "CT Abdomen", "CT abdomen staging")
    p.l3_smi(35, 41.0, ct)
    out.append(p.write())

    # 22 - prostate cancer with bone metastases, man 72: supervised physiotherapy --------
    p = P("22", "prostate-bone-metastases-sarcopenia-m", "Xavier", "Xavier", "male", 72)
    p.condition("C61", "Malignant neoplasm of prostate", "Prostate adenocarcinoma", 400,
                stage="Metastatic hormone-sensitive", note="Palliative intent: ADT + docetaxel.")
    p.condition("C79.51", "Secondary malignant neoplasm of bone",
                "Bone metastases: lumbar spine and pelvis", 400)
    p.height(400, 178)
    p.weight(180, 84.5)
    p.weight(60, 84.2)
    p.weight(8, 84.0)
    p.grip(8, left=23.0, right=24.0)
    p.gait(8, 1.0)
    p.ecog(8, 1)
    ct = p.ct_abdomen_pelvis(30)
    p.l3_smi(30, 47.0, ct)
    out.append(p.write())

    # 23 - acute myeloid leukaemia in induction, woman 60: platelets 42 ------------------
    p = P("23", "aml-low-platelets-probable-f", "Yara", "Yara", "female", 60)
    p.condition("C92.00", "Acute myeloblastic leukemia, not having achieved remission",
                "Acute myeloid leukaemia", 30, note="Curative intent: induction chemotherapy.")
    p.height(30, 168)
    p.weight(180, 66.0)
    p.weight(30, 65.5)
    p.weight(4, 65.0)
    p.grip(4, left=13.0, right=14.0)
    p.ecog(4, 1)
    p.platelets(3, 42)
    p.haemoglobin(3, 9.5)
    out.append(p.write())

    # 24 - NSCLC with fever, man 67: exercise deferred, CRP not attributed to the tumour --
    p = P("24", "nsclc-fever-crp-probable-m", "Zeno", "Zeno", "male", 67)
    p.condition("C34.12", "Malignant neoplasm of upper lobe, left bronchus or lung",
                "Lung adenocarcinoma, left upper lobe", 100, stage="Stage IIIB",
                note="Curative intent: concurrent chemoradiotherapy.")
    p.height(100, 174)
    p.weight(180, 76.5)
    p.weight(100, 76.2)
    p.weight(3, 76.0)
    p.grip(6, left=21.0, right=22.0)
    p.gait(6, 1.0)
    p.ecog(6, 1)
    p.temperature(1, 38.6, hour=18, minute=0)
    p.crp(1, 85.0)
    p.albumin(1, 30.0)
    out.append(p.write())

    # 25 - gastric cancer, woman 71, ECOG as LOINC answer: refractory cachexia -----------
    p = P("25", "gastric-refractory-ecog-loinc-answer-f", "Agnes", "Agnes", "female", 71)
    p.condition("C16.9", "Malignant neoplasm of stomach, unspecified",
                "Gastric adenocarcinoma with peritoneal metastases", 300, stage="Stage IV",
                note="Palliative intent; gastric outlet obstruction.")
    p.height(300, 160)
    p.weight(180, 60.0)
    p.weight(90, 56.0)
    p.weight(7, 52.0)
    p.grip(7, left=14.0, right=15.0)
    p.ecog_answer(4, "LA9625-0", "Capable of only limited selfcare, confined to bed or chair "
                  "more than 50% of waking hours")
    p.survival(4, 2)
    ct = p.ct_abdomen_pelvis(20)
    p.l3_area(20, 89.6, ct)
    out.append(p.write())
    out.append(p.write_order("gastrojejunostomy", [p.surgery(
        None, "Palliative laparoscopic gastrojejunostomy", 0,
        rid="syn-25-draft-gastrojejunostomy")]))

    # 26 - lung cancer, sex unknown, 55: values below both sexes' cut-offs ---------------
    p = P("26", "lung-sex-unknown-below-both-u", "Alex", "Alex", "unknown", 55)
    p.condition("C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or "
                "lung", "Non-small cell lung cancer", 70, stage="Stage IIIA",
                note="Curative intent: chemoradiotherapy.")
    p.height(70, 170)
    p.weight(180, 65.5)
    p.weight(70, 65.2)
    p.weight(5, 65.0)
    p.grip(5, left=13.0, right=14.0)
    p.gait(5, 0.9)
    p.ecog(5, 1)
    ct = p.ct_abdomen_pelvis(30)
    p.l3_smi(30, 38.0, ct)
    out.append(p.write())

    # 27 - basal-cell carcinoma of the skin only, man 75: no routine screening -----------
    p = P("27", "basal-cell-skin-only-no-screening-m", "Bruno", "Bruno", "male", 75)
    p.condition("C44.311", "Basal cell carcinoma of skin of nose", "Basal cell carcinoma, nose",
                20, note="Curative intent: Mohs surgery planned.")
    p.height(400, 176)
    p.weight(180, 80.5)
    p.weight(20, 80.2)
    p.weight(5, 80.0)
    p.ecog(5, 0)
    out.append(p.write())

    # 28 - breast cancer coded in SNOMED CT, woman 58; imaging without modality ----------
    p = P("28", "breast-snomed-screening-due-f", "Carla", "Carla", "female", 58)
    p.condition("254837009", "Malignant neoplasm of breast (disorder)",
                "Invasive lobular carcinoma, left breast", 45, system=SCT, stage="Stage IIB",
                note="Curative intent: neoadjuvant chemotherapy.")
    p.height(45, 164)
    p.weight(180, 67.5)
    p.weight(45, 67.2)
    p.weight(6, 67.0)
    p.ecog(6, 0)
    p.imaging_without_modality(20, "41806-1", "CT Abdomen",
                               "Imported outside report, no DICOM series")
    out.append(p.write())

    # 29 - colon cancer, man 70, no weight in 30 days: Martin without BMI ---------------
    p = P("29", "colon-no-current-weight-low-smi-m", "Dario", "Dario", "male", 70)
    p.condition("C18.2", "Malignant neoplasm of ascending colon", "Ascending colon adenocarcinoma",
                90, stage="Stage III, resected", note="Curative intent: adjuvant FOLFOX.")
    p.height(90, 175)
    p.weight(120, 76.0)
    p.weight(45, 75.0)
    p.grip(10, left=24.0, right=25.0)
    p.gait(10, 1.0)
    p.ecog(10, 0)
    ct = p.ct_abdomen_pelvis(20)
    p.l3_smi(20, 37.9, ct)
    out.append(p.write())
    out.append(p.write_order("oxaliplatin", [p.medreq(
        atc("L01XA03", "oxaliplatin"), "Oxaliplatin 85 mg/m2 IV day 1 (FOLFOX cycle 1)", 0,
        status="draft", add=False, rid="syn-29-draft-oxaliplatin")]))

    # 30 - newly diagnosed pancreatic cancer, man 62: fast weight loss in 12 weeks -------
    p = P("30", "pancreatic-fast-weight-loss-m", "Emil", "Emil", "male", 62)
    p.condition("C25.0", "Malignant neoplasm of head of pancreas",
                "Pancreatic ductal adenocarcinoma, head", 40, stage="Borderline resectable",
                note="Curative intent: neoadjuvant FOLFIRINOX.")
    p.height(40, 180)
    p.weight(90, 80.0)
    p.weight(30, 76.0)
    p.weight(5, 72.0)
    p.grip(5, left=32.0, right=33.0)
    p.gait(5, 1.1)
    p.ecog(5, 1)
    out.append(p.write())

    # 31 - NSCLC under palliative care (Z51.5), man 74: palliative referral only --------
    p = P("31", "nsclc-palliative-care-cachexia-m", "Felix", "Felix", "male", 74)
    p.condition("C34.31", "Malignant neoplasm of lower lobe, right bronchus or lung",
                "Lung squamous cell carcinoma, right lower lobe", 300, stage="Stage IVB",
                note="Best supportive care after three lines of treatment.")
    p.condition("Z51.5", "Encounter for palliative care", "Specialist palliative care",
                14, category="encounter-diagnosis")
    p.height(300, 172)
    p.weight(180, 70.0)
    p.weight(90, 67.0)
    p.weight(6, 64.4)
    p.grip(6, left=23.0, right=24.0)
    p.ecog(6, 2)
    out.append(p.write())

    return out


if __name__ == "__main__":
    for path in build():
        print(path.relative_to(HERE))
