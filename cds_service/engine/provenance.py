"""Provenance on cards: a cut-off an override pack chose is named as local, with its own source."""

from __future__ import annotations

WORDS = {
    "en": {"local": "local cut-off", "profile": "{title}, local cut-off", "label": "{label}; local cut-off: {refs}"},
    "zh-CN": {"local": "本地切点", "profile": "{title}，本地切点", "label": "{label}；本地切点：{refs}"},
}


class Local:
    """The local cut-offs one card uses: which selectors they vary by, and their references."""

    __slots__ = ("profiles", "ct_cutoffs", "references")

    def __init__(self) -> None:
        self.profiles = False  # a local value of a parameter chosen by profile
        self.ct_cutoffs = False  # … by CT cut-off set
        self.references: list[str] = []  # their `source` references, in order of use

    def __bool__(self) -> bool:
        return bool(self.references) or self.profiles or self.ct_cutoffs


def local_cutoffs(rs, run, members) -> Local | None:
    """The parameters a card applies (its findings' threshold evidence) or shows (its rules'
    summary and detail) whose value in force is an override's own choice; None when there is
    none (always so with the bundled packs alone: nothing is worked out then)."""
    if not rs.local_params:
        return None
    names: list[str] = []
    for finding, rule in members:
        for entry in finding.evidence:
            name = entry.get("parameter")
            if name is not None and name in rs.local_params and name not in names:
                names.append(name)
        for text in list(rule.card.summary.values()) + list((rule.card.detail or {}).values()):
            for var in text.variables:
                base = var.partition(".")[0]
                if base in rs.local_params and base not in names:
                    names.append(base)
    found = Local()
    for name in names:
        value = run.param(name)
        if value is None or not value.local:
            continue
        selector = rs.params[name].selector
        found.profiles |= selector == "profiles"
        found.ct_cutoffs |= selector == "ct_cutoffs"
        if value.source and value.source not in found.references:
            found.references.append(value.source)
        elif not value.source and not found.references:
            found.references.append("")
    return found or None


def words(locale: str) -> dict[str, str]:
    return WORDS.get(locale, WORDS["en"])


def profile_title(title: str, locale: str) -> str:
    """'EWGSOP2' → 'EWGSOP2, local cut-off'."""
    return words(locale)["profile"].format(title=title)


def source_label(rs, label: str, local: Local, locale: str) -> str:
    """The card's source label, naming the local cut-offs' own references."""
    refs = ", ".join(r for r in (rs.short_citation(x, locale) or x for x in local.references) if r)
    if not refs:
        return words(locale)["profile"].format(title=label)
    return words(locale)["label"].format(label=label, refs=refs)
