"""Medication recognition: whether an order's drug is in a drug class, and how that was known.

A medication fact (MedicationRequest, -Statement, -Administration with `codes: X`) matches a
resource when any of these identifies the drug as a member of value set X
(docs/medication-recognition.md):

1. a coding of `medicationCodeableConcept` is in X (ATC, RxNorm ingredient, a hospital's code);
2. a coding is in the pack's table `X-clinical-drugs` (RxNorm SCD/SBD: the product's name names
   its ingredient, whose code in `X-substances` is in X);
3. the Medication the order points to (contained `#id`, in draftOrders, or in the record) has such
   a code, or an ingredient (`ingredient.itemCodeableConcept`) with one;
4. only when no coding is known to X or its tables, and none is of a system X covers by prefix
   (an ATC code outside L01 is a definite no): a name of `X-substances` appears as a whole word
   in a coding's `display` or a concept's `text` ("recognised by name").

The engine sees a copy of each such resource whose `medicationCodeableConcept` also holds the
codings that made it a member, so every fact and filter reads it as usual; `Recognition` notes
say how, for the evidence. Pure functions of the resources and the compiled value sets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
CONCEPT = "medicationCodeableConcept"
SUBSTANCES = "-substances"
CLINICAL_DRUGS = "-clinical-drugs"
#: marks a coding the service added to its own view of a resource (never sent anywhere)
RECOGNISED_URL = "https://sarcopenia-cds.org/StructureDefinition/recognised-by"
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


@dataclass(frozen=True)
class Recognition:
    """How one resource was found to be in one drug class (the evidence of a medication fact)."""

    value_set: str
    by: str  # code | medication (the Medication's code) | ingredient | clinical-drug | name
    text: str
    system: str
    code: str


@dataclass
class DrugClass:
    """A value set read by medication facts, with its optional name and clinical-drug tables."""

    name: str
    valueset: object
    substances: list[tuple[tuple[str, ...], str, str, str]] = field(default_factory=list)
    clinical: dict[tuple[str, str], tuple[str, str, str, str]] = field(default_factory=dict)
    known: set[tuple[str, str]] = field(default_factory=set)
    #: systems the value set covers by prefix or range (ATC L01): a code there is a definite answer
    classified: frozenset[str] = frozenset()


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


def _contains(words: tuple[str, ...], name: tuple[str, ...]) -> bool:
    n = len(name)
    return any(words[i:i + n] == name for i in range(len(words) - n + 1))


def drug_classes(facts, value_sets) -> tuple[dict[str, DrugClass], list[tuple[str, str, str]]]:
    """The drug classes of a compiled pack (every value set a medication fact reads), and the
    problems of their tables as (value set, code, message): a clinical drug whose name names no
    substance of the class cannot say which ingredient it is."""
    classes: dict[str, DrugClass] = {}
    problems: list[tuple[str, str, str]] = []
    for fact in facts.values():
        if getattr(fact, "kind", None) != "data" or fact.resource_type not in MEDICATION_TYPES:
            continue
        vs = fact.valueset
        if vs is None or vs.name in classes:
            continue
        drug = DrugClass(vs.name, vs, classified=frozenset(
            system for systems, _ in vs.prefixes for system in systems) | frozenset(
            system for systems, _, _ in vs.ranges for system in systems))
        table = value_sets.get(vs.name + SUBSTANCES)
        if table is not None:
            for system, code, display in table.named:
                drug.substances.append((_words(display), display, system, code))
            drug.known |= table.exact
        products = value_sets.get(vs.name + CLINICAL_DRUGS)
        if products is not None:
            for system, code, display in products.named:
                words = _words(display)
                named = [s for s in drug.substances if _contains(words, s[0])]
                if not named:
                    problems.append((products.name, code,
                                     f"{code} {display!r} names no substance of {vs.name + SUBSTANCES!r}; "
                                     "add the substance there or remove the product"))
                    continue
                _, substance, s_system, s_code = max(named, key=lambda s: len(s[0]))
                drug.clinical[(system, code)] = (display, substance, s_system, s_code)
            drug.known |= products.exact
        classes[vs.name] = drug
    return classes, problems


def _codings(concept) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or () if isinstance(c, dict) and c.get("code") is not None]


def _texts(concept) -> list[str]:
    if not isinstance(concept, dict):
        return []
    texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
    texts += [c["display"] for c in concept.get("coding") or ()
              if isinstance(c, dict) and isinstance(c.get("display"), str)]
    return texts


def _medication(resource, others) -> tuple[str | None, dict | None]:
    """The Medication `medicationReference` names: contained (#id) or among `others` (Type/id)."""
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(target, str) or not target:
        return None, None
    if target.startswith("#"):
        for contained in resource.get("contained") or ():
            if isinstance(contained, dict) and contained.get("resourceType") == "Medication" \
                    and contained.get("id") == target[1:]:
                return f"the contained Medication {target}", contained
        return None, None
    parts = target.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Medication":
        found = others.get(parts[-1])
        if found is not None:
            return f"Medication/{parts[-1]}", found
    return None, None


def _label(system: str, code: str, display: str | None) -> str:
    short = system.rsplit("/", 1)[-1] if system else "(no system)"
    names = {"rxnorm": "RxNorm", "atc": "ATC", "sct": "SNOMED CT"}
    text = f"{names.get(short, system)} {code}"
    return f"{text} ({display})" if display else text


def _by_code(drug: DrugClass, coding: dict, where: str | None, kind: str
             ) -> tuple[list[dict], Recognition] | None:
    system, code = coding.get("system"), str(coding["code"])
    display = coding.get("display") if isinstance(coding.get("display"), str) else None
    suffix = f" of {where}" if where else ""
    if drug.valueset.matches(system, code):
        text = f"recognised by code {_label(system, code, display)}{suffix}, in value set {drug.name}"
        derived = [] if kind == "code" else [
            {"system": system, "code": code, "extension": [{"url": RECOGNISED_URL, "valueCode": kind}]}]
        return derived, Recognition(drug.name, kind, text, system, code)
    product = drug.clinical.get((system, code))
    if product is not None:
        name, substance, s_system, s_code = product
        text = (f"recognised by RxNorm clinical drug {code} '{name}'{suffix} (table "
                f"{drug.name}{CLINICAL_DRUGS}): {substance}, {_label(s_system, s_code, None)}")
        derived = {"system": s_system, "code": s_code, "display": substance,
                   "extension": [{"url": RECOGNISED_URL, "valueCode": "clinical-drug"}]}
        return [derived], Recognition(drug.name, "clinical-drug", text, s_system, s_code)
    return None


def _by_name(drug: DrugClass, texts: list[str]) -> tuple[list[dict], Recognition] | None:
    for text in texts:
        words = _words(text)
        named = [s for s in drug.substances if _contains(words, s[0])]
        if named:
            _, substance, system, code = max(named, key=lambda s: len(s[0]))
            note = (f"recognised by name: '{substance}' in '{text[:120]}' ({_label(system, code, None)}, "
                    f"table {drug.name}{SUBSTANCES}; no known code)")
            derived = {"system": system, "code": code, "display": substance,
                       "extension": [{"url": RECOGNISED_URL, "valueCode": "name"}]}
            return [derived], Recognition(drug.name, "name", note, system, code)
    return None


def recognise_one(resource: dict, classes: dict[str, DrugClass],
                  medications: dict[str, dict]) -> tuple[list[dict], list[Recognition]]:
    """The codings to add to `resource`'s concept, and one Recognition per class it is in."""
    concept = resource.get(CONCEPT)
    where, medication = _medication(resource, medications)
    sources: list[tuple[dict, str | None, str]] = [(c, None, "code") for c in _codings(concept)]
    texts = _texts(concept)
    if medication is not None:
        sources += [(c, where, "medication") for c in _codings(medication.get("code"))]
        texts += _texts(medication.get("code"))
        for ingredient in medication.get("ingredient") or ():
            item = ingredient.get("itemCodeableConcept") if isinstance(ingredient, dict) else None
            sources += [(c, f"an ingredient of {where}", "ingredient") for c in _codings(item)]
            texts += _texts(item)
    added: list[dict] = []
    notes: list[Recognition] = []
    for drug in classes.values():
        found = None
        for coding, origin, kind in sources:
            found = _by_code(drug, coding, origin, kind)
            if found is not None:
                break
        if found is None and not any(
            (c.get("system"), str(c["code"])) in drug.known or c.get("system") in drug.classified
            for c, _, _ in sources
        ):
            found = _by_name(drug, texts)
        if found is None:
            continue
        derived, note = found
        notes.append(note)
        added.extend(derived)
    return added, notes


def prepare(pool: list[dict], classes: dict[str, DrugClass], medications: dict[str, dict]
            ) -> tuple[list[dict], dict[str, list[Recognition]]]:
    """`pool` with medication resources seen through recognition, and the notes by reference."""
    if not classes:
        return pool, {}
    out: list[dict] = []
    notes: dict[str, list[Recognition]] = {}
    for resource in pool:
        rtype = resource.get("resourceType")
        if rtype not in MEDICATION_TYPES:
            out.append(resource)
            continue
        added, found = recognise_one(resource, classes, medications)
        if found:
            own = resource.get("id")
            notes.setdefault(f"{rtype}/{own}" if own else rtype, []).extend(found)
        if added:
            concept = resource.get(CONCEPT)
            concept = dict(concept) if isinstance(concept, dict) else {}
            own = concept.get("coding")
            concept["coding"] = [*(own if isinstance(own, list) else ()), *added]
            resource = {**resource, CONCEPT: concept}
        out.append(resource)
    return out, notes


def medications_by_id(*pools) -> dict[str, dict]:
    """Medication resources by id, from any of the given lists of resources."""
    found: dict[str, dict] = {}
    for pool in pools:
        for resource in pool or ():
            if isinstance(resource, dict) and resource.get("resourceType") == "Medication" \
                    and isinstance(resource.get("id"), str):
                found.setdefault(resource["id"], resource)
    return found
