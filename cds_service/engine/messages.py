"""The engine's own words in card texts, per locale: why a value was excluded (data quality),
and why a threshold was decided without the sex or band it depends on."""

from __future__ import annotations

#: locale → phrase key → text; en is the fallback. {limits}, {first}, {second}, {allowed} are filled in.
DATA_QUALITY = {
    "en": {
        "outside": "outside plausible limits {limits}",
        "conflict": "conflicting values {first} and {second} differ by more than {allowed}",
        "and": " and ",
        "both_sexes": "the same for both sexes: record the sex used for clinical reference ranges",
        "every_band": "the same for every band",
    },
    "zh-CN": {
        "outside": "超出可信范围（{limits}）",
        "conflict": "数值相互矛盾：{first} 与 {second} 相差超过 {allowed}",
        "and": " 且 ",
        "both_sexes": "男女切点结果相同：请记录用于临床参考范围的性别",
        "every_band": "各分档结果相同",
    },
}


def phrase(locale: str, key: str, **values: str) -> str:
    """One data-quality phrase in the locale (English when the locale has none)."""
    table = DATA_QUALITY.get(locale) or DATA_QUALITY["en"]
    return table.get(key, DATA_QUALITY["en"][key]).format(**values)
